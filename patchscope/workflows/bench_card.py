"""The robustness card: what ``patchscope bench`` found, as typed results and as versioned JSON with a JSON Schema.

A card has a ``schema`` name and a ``version``, then who was measured (``model``, ``data``), under which rules
(``protocol``: its version, profile, shares, budgets and seed), what was found (``results``: per share the clean,
robust and certified accuracy and each attack's part, then the self-checks' flags), the command that reproduces it,
and how this one run went (``run``: wall time, hardware, library versions). Everything but ``run`` is the same, bit
for bit, for the same seed on a CPU; the schema file ships in the package (:func:`card_schema`).

>>> share = ShareResult(0.05, 7, 49 / 1024, 4, 1.0, 0.5, None, 4, 2, None, ())
>>> card = RobustnessCard(
...     protocol=ProtocolInfo("v1", "quick", 0, (0.05,), {}),
...     model=ModelIdentity("gtsrb-cnn", "0123456789abcdef", "cnn", 43, 32, {}),
...     data=DataIdentity("demo", "demo", "fedcba9876543210", 4, 32, "round-robin over classes"),
...     results=Results((share,)),
...     run=RunInfo(1.5, "2026-01-01T00:00:00+00:00", {}, {}),
...     reproduce="patchscope bench --model gtsrb-cnn --data demo --out card.json",
... )
>>> RobustnessCard.from_dict(card.as_dict()) == card
True
>>> data = card.as_dict()
>>> data.get("schema"), data.get("version"), list(data)[-1]
('patchscope.robustness-card', 1, 'reproduce')
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from patchscope.errors import PatchscopeError
from patchscope.io import dumps, write_json

#: the card format's name, in every card's ``schema`` field
SCHEMA_NAME = "patchscope.robustness-card"
#: the card format's version: a field renamed or removed makes the next one
SCHEMA_VERSION = 1
#: the JSON Schema file of this version, inside the package
SCHEMA_FILE = "schemas/robustness-card-v1.schema.json"


@dataclass(frozen=True)
class AttackOutcome:
    """One attack of the cascade at one share.

    Attributes:
        name: the registered attack (``per-image``, ``universal``, ``sparse-rs``).
        kind: ``white-box`` (follows gradients) or ``black-box`` (only reads outputs).
        through: what it attacked: ``model`` (the classifier as evaluated, straight-through gradients included for
            a defense registered with BPDA), ``bpda`` (such a defense), or ``surrogate`` (the bare model under a
            certifier, whose prediction has no gradient; its patches are judged on the certified prediction).
        attacked: images it saw (those still standing when its turn came).
        broken: images it broke, as the judge confirmed.
        steps: its optimiser steps, or its query budget per image for a query attack.
        queries: forward passes of single images it spent (each row of a batch counts one), all images together.
    """

    name: str
    kind: str
    through: str
    attacked: int
    broken: int
    steps: int
    queries: int


@dataclass(frozen=True)
class ShareResult:
    """What was found at one patch share: accuracies are shares of ``images``, counts are images.

    Attributes:
        share: the patch's share of the image area the protocol names (0.01 is 1%).
        side: the square patch's side in pixels, ``round(sqrt(share * H * W))``.
        area: the share the patch really covers, ``side**2 / (H * W)``.
        images: images measured.
        clean: accuracy without a patch (of the defended prediction where there is a defense or certifier).
        robust: accuracy under the worst patch any attack found for each image.
        certified: certified accuracy (None without a certifier).
        clean_count, robust_count, certified_count: the same as image counts.
        attacks: each attack's part, in cascade order.
    """

    share: float
    side: int
    area: float
    images: int
    clean: float
    robust: float
    certified: float | None
    clean_count: int
    robust_count: int
    certified_count: int | None
    attacks: tuple[AttackOutcome, ...]


@dataclass(frozen=True)
class Flag:
    """A self-check's warning (the run still stands; see the protocol's self-checks).

    Attributes:
        code: ``gradient-masking`` (a black-box attack broke images the white-box ones could not) or
            ``robust-rises-with-share`` (robust accuracy at a larger share above that at a smaller one).
        share: the share it is about (None: the whole card).
        message: one line for a person.
    """

    code: str
    share: float | None
    message: str


@dataclass(frozen=True)
class SeededResult:
    """The data's own seeded setting (GTSRB: on-object, stop to yield, targeted): ``robust`` there is the share of
    source images no attack turned into the target.

    Attributes:
        setting: its name, e.g. ``gtsrb-stop-to-yield``.
        source, target: the class ids.
        shares: one :class:`ShareResult` per share, over the source images.
    """

    setting: str
    source: int
    target: int
    shares: tuple[ShareResult, ...]


@dataclass(frozen=True)
class Results:
    """Everything found: per share, the flags, and the seeded setting where the data has one (else None)."""

    shares: tuple[ShareResult, ...]
    flags: tuple[Flag, ...] = ()
    seeded: SeededResult | None = None


@dataclass(frozen=True)
class ProtocolInfo:
    """The rules the card was measured under.

    Attributes:
        version: the protocol's version (``v1``).
        profile: the budget profile (``quick`` or ``standard``).
        seed: the seed of every attack and of every random draw.
        shares: the patch shares measured, smallest first.
        budgets: the profile's budgets, by attack (steps, places, restarts, queries, EOT views, ...), and the images.
        threat: the threat model in words.
        attacks: the cascade's attacks, in order.
    """

    version: str
    profile: str
    seed: int
    shares: tuple[float, ...]
    budgets: dict[str, Any]
    threat: str = "untargeted; one square patch per image, anywhere on the image, any pixel values in [0,1]"
    attacks: tuple[str, ...] = ("per-image", "universal", "sparse-rs")


@dataclass(frozen=True)
class ModelIdentity:
    """What was measured.

    Attributes:
        name: the model as given (a zoo name or a checkpoint path).
        weights: the weights' fingerprint (:func:`~patchscope.models.checkpoint.weights_fingerprint`).
        arch: the architecture its card names.
        classes: how many classes it has.
        input_size: its input side in pixels.
        preprocessing: how images are prepared for it (resize, crop, mean, std).
        defense: the empirical defense around it (None: none).
        certifier: the certifier (None: none).
        options: the defense's or certifier's options.
        bpda: gradients go straight through the defense's cleaning step.
        randomized: the defense draws fresh randomness on every call (attacks average over it; each verdict is a
            majority over draws).
    """

    name: str
    weights: str
    arch: str
    classes: int
    input_size: int
    preprocessing: dict[str, Any]
    defense: str | None = None
    certifier: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    bpda: bool = False
    randomized: bool = False


@dataclass(frozen=True)
class DataIdentity:
    """The images measured.

    Attributes:
        spec: ``--data`` as given.
        name: the data set's name.
        hash: 16 hex digits naming every image measured, with its label (the seeded setting's too).
        images: how many.
        image_size: their side in pixels.
        selection: how they were picked from the data.
    """

    spec: str
    name: str
    hash: str
    images: int
    image_size: int
    selection: str


@dataclass(frozen=True)
class RunInfo:
    """How this run went: everything here may differ between two runs of the same card.

    Attributes:
        seconds: wall time.
        started: when it started (ISO 8601, UTC).
        hardware: the device and the machine.
        versions: patchscope's, torch's and Python's versions.
    """

    seconds: float
    started: str
    hardware: dict[str, Any]
    versions: dict[str, Any]


@dataclass(frozen=True)
class RobustnessCard:
    """A robustness card (see the module's docstring); :meth:`as_dict` is its JSON."""

    protocol: ProtocolInfo
    model: ModelIdentity
    data: DataIdentity
    results: Results
    run: RunInfo
    reproduce: str
    schema: str = SCHEMA_NAME
    version: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        """The card as JSON values (tuples as lists), ``schema`` and ``version`` first."""
        body = json.loads(dumps(asdict(self)))
        head = {"schema": body.pop("schema"), "version": body.pop("version")}
        return head | body

    def save(self, path: str | Path) -> None:
        """Write the card as indented JSON, atomically (a reader never sees half a card)."""
        write_json(path, self.as_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessCard:
        """A card from its JSON (a card of another schema or version is refused)."""
        if data.get("schema") != SCHEMA_NAME or data.get("version") != SCHEMA_VERSION:
            raise PatchscopeError(
                f"not a {SCHEMA_NAME} version {SCHEMA_VERSION} card: "
                f"schema {data.get('schema')!r}, version {data.get('version')!r}"
            )
        results = data["results"]
        seeded = results.get("seeded")
        return cls(
            protocol=_build(ProtocolInfo, data["protocol"]),
            model=_build(ModelIdentity, data["model"]),
            data=_build(DataIdentity, data["data"]),
            results=Results(
                tuple(_share(s) for s in results["shares"]),
                tuple(_build(Flag, f) for f in results.get("flags", ())),
                None if seeded is None else _build(SeededResult, {**seeded, "shares": _shares(seeded["shares"])}),
            ),
            run=_build(RunInfo, data["run"]),
            reproduce=data["reproduce"],
        )


def _share(data: dict[str, Any]) -> ShareResult:
    return _build(ShareResult, {**data, "attacks": tuple(_build(AttackOutcome, a) for a in data["attacks"])})


def share_from_dict(data: dict[str, Any]) -> ShareResult:
    """A :class:`ShareResult` from its JSON (``asdict`` of one, read back)."""
    return _share(data)


def flag_from_dict(data: dict[str, Any]) -> Flag:
    """A :class:`Flag` from its JSON."""
    flag: Flag = _build(Flag, data)
    return flag


def _shares(items: list[dict[str, Any]]) -> tuple[ShareResult, ...]:
    return tuple(_share(s) for s in items)


def _build(kind: Any, data: dict[str, Any]) -> Any:
    """``kind(**data)`` with list values as tuples where the field is a tuple."""
    tuples = {f.name for f in fields(kind) if str(f.type).startswith("tuple")}
    return kind(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()})


@cache
def _schema_text() -> str:
    return resources.files("patchscope.workflows").joinpath(SCHEMA_FILE).read_text()


def card_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of this card version, as shipped in the package.

    >>> schema = card_schema()
    >>> schema.get("title")
    'patchscope robustness card, version 1'
    """
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def validate_card(data: dict[str, Any]) -> None:
    """Raise a one-line :class:`PatchscopeError` where ``data`` does not follow :func:`card_schema` (checked with the
    ``jsonschema`` package: ``pip install jsonschema``, part of the ``test`` extra)."""
    try:
        import jsonschema
    except ImportError:
        raise PatchscopeError("validating a card needs the jsonschema package (pip install jsonschema)") from None
    errors = sorted(jsonschema.Draft202012Validator(card_schema()).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise PatchscopeError(f"not a valid robustness card at {where}: {errors[0].message}")


def load_card(path: str | Path) -> RobustnessCard:
    """The card in JSON file ``path`` (one that is unreadable, or of another schema or version, is refused)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise PatchscopeError(f"cannot read robustness card {path}: {e.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise PatchscopeError(f"{path} is not a robustness card")
    return RobustnessCard.from_dict(data)
