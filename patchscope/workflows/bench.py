"""``patchscope bench``: a model (bare, behind an empirical defense, or under a certifier) measured under the fixed,
versioned patch-robustness protocol (:mod:`~patchscope.workflows.bench_protocol`), as a robustness card.

At every share an ensemble of attacks runs as a cascade, each on the images still standing: white-box per-image
patches with a place search and restarts, a universal patch, then the gradient-free sparse-rs with a fixed query
budget. A patch counts only when the judge confirms it: the classifier as evaluated (a randomised defense by the
majority of several draws, a certifier by its defended prediction) no longer gives the label. The budgets come from
the profile, not from the user; the same seed gives the same card, ``run`` aside.

>>> from patchscope.data import load_data
>>> from patchscope.models import create_model
>>> card = run_bench(create_model("gtsrb-cnn"), load_data("demo"), shares=(0.05,), model_name="gtsrb-cnn")
>>> r = card.results.shares[0]
>>> r.side, r.robust <= r.clean, [a.name for a in r.attacks]
(7, True, ['per-image', 'universal', 'sparse-rs'])
"""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from patchscope.attacks import Patch, PerImagePatches, create_attack
from patchscope.attacks.eot import on_object_plan, paste_planned
from patchscope.data import ImageSet, ImageStream
from patchscope.defenses import create_certifier, create_defense, defense_spec
from patchscope.defenses.registry import Certifier, certifier_spec
from patchscope.errors import Interrupted, PatchscopeError
from patchscope.formatting import pct
from patchscope.io import dumps, write_json
from patchscope.models.batching import auto_batch_size
from patchscope.models.checkpoint import weights_fingerprint
from patchscope.progress import Update, progress_bar
from patchscope.validate import check_int, check_same_settings
from patchscope.workflows.bench_card import (
    AttackOutcome,
    DataIdentity,
    Flag,
    ModelIdentity,
    ProtocolInfo,
    Results,
    RobustnessCard,
    RunInfo,
    SeededResult,
    ShareResult,
    flag_from_dict,
    share_from_dict,
)
from patchscope.workflows.bench_checks import check_certified, masking_flag, monotone_flags
from patchscope.workflows.bench_protocol import (
    CASCADE,
    KINDS,
    PROTOCOL_VERSION,
    ROWS,
    SEEDED_SELECTION,
    SELECTION,
    SHARES,
    Profile,
    attack_config,
    check_shares,
    optimiser_queries,
    profile,
    seeded_setting,
    select_images,
    share_side,
)
from patchscope.workflows.certify import default_batch_size

#: images per forward pass when judging
JUDGE_BATCH = 256


@dataclass
class Subject:
    """What is measured: the bare ``model``, the classifier as evaluated (``defended``: the model itself where there
    is no defense) and, under a certifier, its name (made per share: its masks depend on the patch side)."""

    model: nn.Module
    defended: nn.Module
    defense: str | None = None
    certifier: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    bpda: bool = False
    randomized: bool = False

    def through(self, attack: str) -> str:
        """What attack ``attack`` attacks, as a card says it (see :class:`AttackOutcome`)."""
        if KINDS[attack] == "black-box":
            return "model"
        if self.certifier is not None:
            return "surrogate"
        return "bpda" if self.bpda else "model"


@dataclass
class Judge:
    """Whether each image is still classified right: by the defended classifier (a randomised one by the majority of
    ``draws`` draws, ties to the smaller class), or by a certifier's defended prediction."""

    subject: Subject
    cert: Certifier | None
    draws: int
    batch: int
    rows: int = ROWS

    @torch.no_grad()
    def right(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N,) bool for images ``x`` (N, 3, H, W) in [0,1] with labels ``y`` (N,): classified right."""
        return self.prediction(x) == y

    def holds(self, x: torch.Tensor, y: torch.Tensor, target: int | None) -> torch.Tensor:
        """(N,) bool: the (patched) images still stand: classified right, or (``target`` given) not as ``target``."""
        return self.right(x, y) if target is None else self.prediction(x) != target

    @torch.no_grad()
    def prediction(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) long: the classifier's verdict on images ``x``."""
        if self.cert is not None:
            return self.cert.outcomes(self.subject.model, x, unknown(x), self.batch).prediction
        return torch.cat([self._predict(x[i : i + JUDGE_BATCH]) for i in range(0, len(x), JUDGE_BATCH)])

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        model = self.subject.defended
        if not self.subject.randomized:
            return model(x).argmax(1)
        first = model(x)
        votes = F.one_hot(first.argmax(1), first.shape[1])
        for _ in range(self.draws - 1):
            votes += F.one_hot(model(x).argmax(1), first.shape[1])
        return votes.argmax(1)

    @torch.no_grad()
    def certified(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """(N,) bool, certified against every patch of the share (None: no certifier)."""
        return None if self.cert is None else self.cert.outcomes(self.subject.model, x, y, self.batch).certified


def unknown(x: torch.Tensor) -> torch.Tensor:
    """Labels -1 for images ``x``: a certifier then spends nothing on certificates (it certifies none), only on its
    defended prediction."""
    return torch.full((len(x),), -1, dtype=torch.long, device=x.device)


class CertifiedPrediction(nn.Module):
    """A certifier's defended prediction as logits (one-hot: it has no gradient), for a query attack to query."""

    def __init__(self, model: nn.Module, cert: Certifier, batch: int) -> None:
        super().__init__()
        self.model, self.cert, self.batch = model, cert, batch
        self.classes = tuple(getattr(model, "classes", ()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, classes) one-hot float logits of the defended prediction."""
        prediction = self.cert.outcomes(self.model, x, unknown(x), self.batch).prediction
        return F.one_hot(prediction, len(self.classes)).float()


def run_bench(
    model: nn.Module,
    data: ImageSet | ImageStream,
    *,
    model_name: str,
    data_spec: str = "demo",
    defense: str | None = None,
    certifier: str | None = None,
    options: Mapping[str, Any] | None = None,
    profile_name: str = "quick",
    seed: int = 0,
    shares: tuple[float, ...] = SHARES,
    device: str | torch.device = "cpu",
    progress: bool = False,
    out: str = "card.json",
    checkpoint: BenchCheckpoint | None = None,
    seeded: bool = True,
) -> RobustnessCard:
    """Measure ``model`` under protocol v1 and return its robustness card.

    Args:
        model: the classifier (a :class:`~patchscope.models.Classifier`), on ``device``.
        data: the data; the profile's number of images is picked from it (:func:`select_images`).
        model_name: the model as the user named it (the card and its reproduce command say it).
        data_spec: the data as the user named it.
        defense: an empirical defense around the model (:func:`~patchscope.defenses.list_defenses`).
        certifier: a certifier instead (:func:`~patchscope.defenses.list_certifiers`): certified accuracy too.
        options: the defense's or certifier's options.
        profile_name: ``quick`` or ``standard`` (:data:`~patchscope.workflows.bench_protocol.PROFILES`).
        seed: the seed of every attack and random draw.
        shares: the patch shares (default: the protocol's).
        device: where to run.
        progress: show one progress bar over the shares' attacks.
        out: the card's file, for the reproduce command.
        checkpoint: keep each finished share there; with its ``resume``, skip the shares it holds (same card).
        seeded: also measure the data's seeded setting where it has one (GTSRB: stop to yield, targeted).

    Returns:
        A :class:`~patchscope.workflows.bench_card.RobustnessCard`. A self-check that finds a certified image broken
        raises :class:`~patchscope.workflows.bench_checks.SelfCheckFailed`; an interrupt says which shares were done.
    """
    started, clock = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    prof = profile(profile_name)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    shares = check_shares(tuple(shares), data.image_size)
    picked, settings, data_hash, selection = _settings(data, prof, seeded, device)
    subject = make_subject(model, data, defense, certifier, dict(options or {}), device)
    subject.randomized = is_randomized(subject.defended, settings[0].x, seed)
    kept = Kept(checkpoint, _identity(prof, seed, subject, data_hash))
    rows = _all_shares(subject, settings, shares, prof, seed, device, progress, kept)
    return RobustnessCard(
        protocol=ProtocolInfo(PROTOCOL_VERSION, prof.name, seed, shares, prof.budgets(), attacks=CASCADE),
        model=model_identity(model, model_name, subject),
        data=DataIdentity(data_spec, picked.name, data_hash, len(picked), picked.image_size, selection),
        results=_results(rows, settings),
        run=RunInfo(round(time.perf_counter() - clock, 3), started, hardware(device), versions()),
        reproduce=reproduce_command(model_name, data_spec, subject, prof.name, seed, shares, out),
    )


def _settings(
    data: ImageSet | ImageStream, prof: Profile, seeded: bool, device: str | torch.device
) -> tuple[ImageSet | ImageStream, list[Setting], str, str]:
    """The protocol's images (:func:`select_images`) and, where the data has one and ``seeded``, the seeded setting's
    (its source class's first images): the protocol's images, the settings, the hash of all the images measured and
    how they were picked."""
    picked = select_images(data, prof.images).load()
    if len(picked) == 0:
        raise PatchscopeError(f"data {data.name} holds no images", params=("data",))
    settings = [Setting(None, picked.float_images(device), picked.labels.to(device))]
    found = seeded_setting(data.classes) if seeded else None
    own = data.of_class(found[1]).head(prof.images).load() if found is not None else None
    if found is None or own is None or len(own) == 0:
        return picked, settings, picked.data_hash(), SELECTION
    name, source, target = found
    settings.append(Setting(name, own.float_images(device), own.labels.to(device), target, source))
    digest = hashlib.sha256(f"{picked.data_hash()}+{own.data_hash()}".encode()).hexdigest()[:16]
    return picked, settings, digest, SELECTION + SEEDED_SELECTION


def _results(rows: dict[str | None, list[Row]], settings: list[Setting]) -> Results:
    """The card's results: the protocol's shares, every flag (the shares' own, then the monotonicity checks'), and
    the seeded setting's shares where there is one."""
    flags: list[Flag] = []
    seeded = None
    for s in settings:
        own = rows[s.name]
        rising = monotone_flags([r for r, _ in own])
        flags += [f for _, found in own for f in found] + [f if s.name is None else _named(f, s.name) for f in rising]
        if s.name is not None and s.source is not None and s.target is not None:
            seeded = SeededResult(s.name, s.source, s.target, tuple(r for r, _ in own))
    return Results(tuple(r for r, _ in rows[None]), tuple(flags), seeded)


def _identity(prof: Profile, seed: int, subject: Subject, data_hash: str) -> dict[str, Any]:
    """What a bench checkpoint must match to be resumed: the protocol, profile, seed, weights, data and defense."""
    found = {"protocol": PROTOCOL_VERSION, "profile": prof.name, "seed": seed}
    found |= {"weights": weights_fingerprint(subject.model), "data_hash": data_hash, "defense": subject.defense}
    return found | {"certifier": subject.certifier, "options": json.loads(dumps(subject.options))}


def make_subject(
    model: nn.Module,
    data: ImageSet | ImageStream,
    defense: str | None,
    certifier: str | None,
    options: dict[str, Any],
    device: str | torch.device,
) -> Subject:
    """What is measured: ``model`` alone, behind ``defense`` (fitted on the first 1024 images of ``data`` where it
    measures itself first; BPDA where its registration says so), or under ``certifier`` (its options checked now)."""
    if defense is not None and certifier is not None:
        raise PatchscopeError("give a defense or a certifier, not both", params=("defense", "certifier"))
    if certifier is not None:
        spec = certifier_spec(certifier)
        return Subject(model, model, certifier=certifier, options=spec.check(options))
    if defense is None:
        if options:
            raise PatchscopeError("options belong to a defense or a certifier: name one", params=("options",))
        return Subject(model, model)
    spec = defense_spec(defense)
    fit = data.head(1024).float_images(device) if spec.takes("clean_images") else None
    defended = create_defense(defense, model, clean_images=fit, **options)
    return Subject(model, defended, defense, options=spec.check(options), bpda=bool(spec.meta["bpda"]))


@torch.no_grad()
def is_randomized(model: nn.Module, x: torch.Tensor, seed: int) -> bool:
    """Whether ``model`` gives two different outputs for the same images (a defense drawing fresh noise)."""
    torch.manual_seed(seed)
    probe = x[:8]
    return not torch.equal(model(probe), model(probe))


@dataclass(frozen=True)
class BenchCheckpoint:
    """Where :func:`run_bench` keeps the shares it has finished (a small JSON file, written atomically after each
    share), so that an interrupted bench resumes at the share where it stopped, to the card an uninterrupted one
    gives.

    Args:
        path: the checkpoint file.
        resume: continue from ``path`` if it exists (refused if the model, data, profile, seed or defense changed).
    """

    path: Path
    resume: bool = False


@dataclass
class Setting:
    """Images measured at every share: the protocol's (``name`` None, untargeted) or the data's seeded setting
    (``target``: the class its attacks aim for). ``x`` (N, 3, H, W) in [0,1] and ``y`` (N,) on the device."""

    name: str | None
    x: torch.Tensor
    y: torch.Tensor
    target: int | None = None
    source: int | None = None


Row = tuple[ShareResult, list[Flag]]


@dataclass
class Kept:
    """The shares a :class:`BenchCheckpoint` holds for one bench (``identity``: what must match to resume)."""

    checkpoint: BenchCheckpoint | None
    identity: dict[str, Any]

    def load(self) -> dict[tuple[str | None, float], Row]:
        """The finished shares, by setting and share (none when not resuming or nothing is kept)."""
        ckpt = self.checkpoint
        if ckpt is None or not (ckpt.resume and ckpt.path.exists()):
            return {}
        try:
            saved = json.loads(ckpt.path.read_text())
            check_same_settings(saved["identity"], self.identity)
            return {
                (r["setting"], float(r["result"]["share"])): (
                    share_from_dict(r["result"]),
                    [flag_from_dict(f) for f in r["flags"]],
                )
                for r in saved["shares"]
            }
        except (OSError, ValueError, KeyError, TypeError):
            raise PatchscopeError(f"resume: {ckpt.path} is not a bench checkpoint", params=("resume",)) from None

    def keep(self, done: dict[tuple[str | None, float], Row]) -> None:
        """Write the finished shares ``done`` (nothing without a checkpoint)."""
        if self.checkpoint is not None:
            rows = [
                {"setting": setting, "result": asdict(r), "flags": [asdict(f) for f in flags]}
                for (setting, _), (r, flags) in done.items()
            ]
            write_json(self.checkpoint.path, {"identity": self.identity, "shares": rows})

    def interrupted(self, at: tuple[str | None, float], done: int, total: int, signum: int) -> Interrupted:
        """The interrupt to raise at ``at`` (setting, share) with ``done`` of ``total`` shares finished: what was
        kept."""
        setting, share = at
        where = f"share {pct(share)}" + (f" of the {setting} setting" if setting else "")
        what = f"bench interrupted at {where} ({done} of {total} shares done)"
        if self.checkpoint is None or done == 0:
            return Interrupted(f"{what}; no card was written", signum)
        return Interrupted(f"{what}; no card was written; checkpoint saved to {self.checkpoint.path}", signum)


def _all_shares(
    subject: Subject,
    settings: list[Setting],
    shares: tuple[float, ...],
    prof: Profile,
    seed: int,
    device: str | torch.device,
    progress: bool,
    kept: Kept,
) -> dict[str | None, list[Row]]:
    """Every setting's share results and flags, in order (those ``kept`` holds read back, each new one kept); an
    interrupt says how many were done. ``progress``: one bar over all the attacks (their own bars stay off)."""
    before, done = kept.load(), {}
    total = len(shares) * len(settings)
    with progress_bar(total * len(CASCADE), "bench", progress) as update:
        for s in settings:
            for share in shares:
                key = (s.name, share)
                if key in before:
                    done[key] = before[key]
                    update(advance=len(CASCADE))
                    continue
                try:
                    row = bench_share(subject, s.x, s.y, share, prof, seed, device, update, target=s.target)
                except Interrupted as e:
                    raise kept.interrupted(key, len(done), total, e.signum) from None
                done[key] = row if s.name is None else (row[0], [_named(f, s.name) for f in row[1]])
                kept.keep(done)
    return {s.name: [done[(s.name, share)] for share in shares] for s in settings}


def _named(flag: Flag, setting: str) -> Flag:
    """``flag`` of a seeded setting: its message names the setting."""
    return Flag(flag.code, flag.share, f"{setting}: {flag.message}")


def bench_share(
    subject: Subject,
    x: torch.Tensor,
    y: torch.Tensor,
    share: float,
    prof: Profile,
    seed: int,
    device: str | torch.device,
    update: Update | None = None,
    attacks: tuple[str, ...] = CASCADE,
    target: int | None = None,
) -> tuple[ShareResult, list[Flag]]:
    """One share: clean (and certified) images, then the cascade on what stands; the self-checks' flags.

    Args:
        subject: what is measured.
        x: (N, 3, H, W) images in [0,1] on ``device``; ``y``: (N,) labels.
        share: the patch's share of the image area.
        prof: the budgets.
        seed: every attack's seed; the global generator (a randomised defense's draws) starts from it too.
        device: where to run.
        update: a progress bar's update, advanced once per attack.
        attacks: the cascade (a part of it measures what each attack does alone).
        target: a targeted setting's class: an image is broken once classified as it (None: untargeted).

    Returns:
        The :class:`ShareResult` and its flags. Raises :class:`SelfCheckFailed` where a certified image was broken.
    """
    size, n = x.shape[-1], len(x)
    side = share_side(share, size)
    torch.manual_seed(seed)
    judge = _judge(subject, size, side, prof, device)
    clean, certified = judge.right(x, y), judge.certified(x, y)
    standing, broken_by, outcomes = clean.clone(), {}, []
    for name in attacks:
        idx = standing.nonzero().flatten()
        broke, outcome = _cascade_step(name, subject, judge, x[idx], y[idx], share, prof, seed, device, target)
        broken_by[name] = torch.zeros(n, dtype=torch.bool, device=x.device).index_fill_(0, idx[broke], True)
        standing &= ~broken_by[name]
        outcomes.append(outcome)
        if update is not None:
            update(advance=1, share=pct(share), robust=pct(float(standing.float().mean())))
    check_certified(certified, clean & ~standing, share)
    flag = masking_flag(broken_by, share)
    c_count, r_count = int(clean.sum()), int(standing.sum())
    cert_count = None if certified is None else int(certified.sum())
    result = ShareResult(
        share=share,
        side=side,
        area=side * side / (size * size),
        images=n,
        clean=c_count / n,
        robust=r_count / n,
        certified=None if cert_count is None else cert_count / n,
        clean_count=c_count,
        robust_count=r_count,
        certified_count=cert_count,
        attacks=tuple(outcomes),
    )
    return result, [flag] if flag is not None else []


def _judge(subject: Subject, size: int, side: int, prof: Profile, device: str | torch.device) -> Judge:
    """The judge at one patch side (a certifier is made for it), and the attacks' rows per forward pass: at most
    :data:`ROWS`, fewer where the memory budget holds fewer (a pass with gradients takes about four times as much)."""
    cert = None
    batch = default_batch_size(device, subject.model, size)
    if subject.certifier is not None:
        cert = create_certifier(subject.certifier, size, side, device, **subject.options)
    rows = max(1, auto_batch_size(subject.model, size, device, most=4 * ROWS) // 4)
    return Judge(subject, cert, prof.draws, batch, rows)


def _cascade_step(
    name: str,
    subject: Subject,
    judge: Judge,
    x: torch.Tensor,
    y: torch.Tensor,
    share: float,
    prof: Profile,
    seed: int,
    device: str | torch.device,
    target: int | None = None,
) -> tuple[torch.Tensor, AttackOutcome]:
    """Attack ``name`` on the standing images ``x`` (labels ``y``; ``target``: a targeted setting's class): which it
    broke (as the judge says) and its part."""
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.bool, device=x.device), AttackOutcome(
            name, KINDS[name], subject.through(name), 0, 0, 0, 0
        )
    torch.manual_seed(seed)
    patched, steps, queries = run_attack_on(name, subject, judge, x, y, share, prof, seed, device, target)
    broke = ~judge.holds(patched, y, target)
    return broke, AttackOutcome(name, KINDS[name], subject.through(name), len(x), int(broke.sum()), steps, queries)


def run_attack_on(
    name: str,
    subject: Subject,
    judge: Judge,
    x: torch.Tensor,
    y: torch.Tensor,
    share: float,
    prof: Profile,
    seed: int,
    device: str | torch.device,
    target: int | None = None,
) -> tuple[torch.Tensor, int, int]:
    """The images ``x`` with attack ``name``'s patches pasted on, its steps and its single-image forward passes."""
    cfg, options = attack_config(name, prof, share, seed, target, judge.rows)
    victim = _attacked(name, subject, judge)
    views = prof.eot_views if subject.randomized else 1
    if name == "per-image":
        options["views"] = views
    attacker = create_attack(name, victim, cfg, device=str(device), progress=False, **options)
    patch = attacker(x, y)
    if name == "sparse-rs":
        queries = int(attacker.queries_used.sum())
    else:
        queries = optimiser_queries(len(x) if name == "per-image" else cfg.batch_size, cfg, views)
    return pasted(x, patch), cfg.steps, queries


def _attacked(name: str, subject: Subject, judge: Judge) -> nn.Module:
    """The module attack ``name`` attacks: the defended classifier; under a certifier the bare model for a white-box
    attack (the certified prediction has no gradient) and the certified prediction for a query attack."""
    if subject.certifier is None or judge.cert is None:
        return subject.defended
    if KINDS[name] == "white-box":
        return subject.model
    return CertifiedPrediction(subject.model, judge.cert, judge.batch)


def pasted(x: torch.Tensor, patch: Patch | PerImagePatches) -> torch.Tensor:
    """``x`` (N, 3, H, W) with ``patch`` pasted at its place(s): per-image patches each on its image, a universal
    patch on every image."""
    n, s = len(x), patch.side
    pix = patch.pixels.to(x.device)
    if isinstance(patch, PerImagePatches):
        location = patch.location
    else:
        location = torch.tensor([patch.location or (0, 0)], dtype=torch.float32)
        pix = pix.expand(n, 3, s, s)
    loc = torch.as_tensor(location, dtype=torch.float32, device=x.device).expand(n, 2)
    return paste_planned(x, pix, on_object_plan(patch.mask.to(x.device), loc, x.shape[-2], x.shape[-1]))


def model_identity(model: nn.Module, name: str, subject: Subject) -> ModelIdentity:
    """The card's ``model`` section."""
    card = dict(getattr(model, "card", {}) or {})
    size = int(getattr(model, "input_size", 0))
    prep = getattr(model, "preprocess", None)
    preprocessing: dict[str, Any] = {"input_size": size}
    if prep is not None:
        preprocessing |= {"resize": prep.resize, "crop": prep.crop, "interpolation": prep.interpolation}
    for key in ("mean", "std"):
        value = getattr(model, key, None)
        if isinstance(value, torch.Tensor):
            preprocessing[key] = [float(v) for v in value.flatten()]
    return ModelIdentity(
        name=name,
        weights=weights_fingerprint(model),
        arch=str(card.get("arch", type(model).__name__)),
        classes=len(getattr(model, "classes", ())),
        input_size=size,
        preprocessing=preprocessing,
        defense=subject.defense,
        certifier=subject.certifier,
        options=dict(subject.options),
        bpda=subject.bpda,
        randomized=subject.randomized,
    )


def reproduce_command(
    model: str,
    data: str,
    subject: Subject,
    profile_name: str,
    seed: int,
    shares: tuple[float, ...],
    out: str,
) -> str:
    """The command line that measures the same card."""
    words = ["patchscope", "bench", "--model", model]
    if subject.defense is not None:
        words += ["--defense", subject.defense]
    if subject.certifier is not None:
        words += ["--certifier", subject.certifier]
    for key, value in sorted(subject.options.items()):
        words += ["--option", f"{key}={value}"]
    words += ["--data", data, "--profile", profile_name, "--seed", str(seed)]
    if tuple(shares) != SHARES:
        words += ["--shares", ",".join(repr(s) for s in shares)]
    return shlex.join([*words, "--out", out])


def hardware(device: str | torch.device) -> dict[str, Any]:
    """The device and the machine a run used."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    return {"device": str(dev), "name": name, "threads": torch.get_num_threads(), "platform": platform.platform()}


def versions() -> dict[str, Any]:
    """The library versions a run used."""
    from patchscope import __version__

    return {"patchscope": __version__, "torch": torch.__version__, "python": platform.python_version()}


#: what the workflow exports
__all__ = [
    "BenchCheckpoint",
    "CertifiedPrediction",
    "Judge",
    "Subject",
    "bench_share",
    "make_subject",
    "pasted",
    "run_bench",
]
