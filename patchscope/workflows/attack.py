"""Run a registered attack on one class of a data set, measure the patch on the images it was made on, save the run.

>>> from patchscope.attacks import AttackConfig
>>> from patchscope.data import load_data
>>> from patchscope.models import create_model
>>> data = load_data("demo")
>>> model = create_model("gtsrb-cnn")
>>> images = AttackImages.select(data, "stop", "yield", limit=8)
>>> config = AttackConfig(size=0.05, steps=2, batch_size=8, candidates=1)
>>> result = run_attack(model, images, config, progress=False)
>>> result.images, result.patch.side, sorted(result.metrics())[:3]
(8, 7, ['attack_images', 'history', 'location'])
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patchscope.attacks import AttackConfig, Patch, PerImagePatches, create_attack
from patchscope.data import ImageSet, ImageStream, resolve_class
from patchscope.errors import PatchscopeError
from patchscope.eval.conditions import DEFAULT_GRID
from patchscope.eval.patch_metrics import patch_success
from patchscope.io import write_json, written_together

#: a universal patch is checked on at most this many of its own images when it is made
CHECK_IMAGES = 256


@dataclass
class AttackImages:
    """The images an attack is made on: the ``source`` class of a data set (at most ``limit``), and its ``target``."""

    images: ImageSet
    classes: tuple[str, ...]
    source: int
    target: int | None
    data_hash: str  # of the whole data set the images come from

    @classmethod
    def select(
        cls, data: ImageSet | ImageStream, source: str | int, target: str | int | None, limit: int | None = None
    ) -> AttackImages:
        """The first ``limit`` images of class ``source`` in ``data`` (names, ids or WordNet ids; ``target`` None or
        '': none), read into memory (from a stream: only those)."""
        src = resolve_class(source, data.classes)
        tgt = resolve_class(target, data.classes) if target not in (None, "") else None
        images = data.of_class(src).head(limit).load()
        if len(images) == 0:
            raise PatchscopeError(f"data {data.name} holds no images of class {data.classes[src]!r}", params=("data",))
        return cls(images, tuple(data.classes), src, tgt, data.data_hash())

    @property
    def source_name(self) -> str:
        return self.classes[self.source]

    @property
    def target_name(self) -> str | None:
        return self.classes[self.target] if self.target is not None else None

    def named_classes(self) -> dict[str, Any]:
        """The classes by name, with their ids: what a run's settings record and a person reads."""
        return {
            "source": self.source_name,
            "source_id": self.source,
            "target": self.target_name,
            "target_id": self.target,
        }


@dataclass
class AttackResult:
    """A patch and what was measured when it was made (on its own images, over the default viewing grid)."""

    patch: Patch | PerImagePatches
    attack: str
    images: int
    seconds: float
    targeted_success: float | None
    untargeted_success: float
    clean_accuracy: float
    history: list[dict[str, float | None]] = field(default_factory=list)

    @property
    def per_image(self) -> bool:
        return isinstance(self.patch, PerImagePatches)

    def metrics(self) -> dict[str, Any]:
        """The run folder's ``metrics.json``."""
        head = {
            "attack_images": self.images,
            "seconds": round(self.seconds, 1),
            "patch_area": self.patch.area_fraction,
            "patch_side": self.patch.side,
        }
        if self.per_image:
            return {
                **head,
                "per_image": True,
                "targeted_success": self.targeted_success,
                "untargeted_success": self.untargeted_success,
                "source_clean_accuracy": self.clean_accuracy,
                "history": self.history,
            }
        return {
            **head,
            "location": self.patch.location,
            "train_targeted_success": self.targeted_success,
            "train_untargeted_success": self.untargeted_success,
            "train_clean_accuracy": self.clean_accuracy,
            "history": self.history,
        }

    def save(self, out: Path, config: Mapping[str, Any]) -> dict[str, Any]:
        """Write the run folder (the patch, ``config.json``, ``metrics.json``; a finished run's checkpoint goes).

        Returns:
            The summary: the folder and the metrics without the history.
        """
        patch_files = ("patches.safetensors", "patches.png", "patch.safetensors", "patch.png")
        with written_together(out, (*patch_files, "config.json", "metrics.json")):
            self.patch.save(out)
            write_json(out / "config.json", dict(config))
            write_json(out / "metrics.json", self.metrics())
        (out / "checkpoint.pt").unlink(missing_ok=True)
        return {"out": str(out), **{k: v for k, v in self.metrics().items() if k != "history"}}


def run_attack(
    model: nn.Module,
    images: AttackImages,
    config: AttackConfig,
    *,
    attack: str = "universal",
    device: str | torch.device = "cpu",
    meta: Mapping[str, Any] | None = None,
    measure: bool = True,
    progress: bool = True,
    **options: Any,
) -> AttackResult:
    """Make a patch with the registered ``attack`` on ``images``, then measure it on them over the default grid.

    Args:
        model: the classifier (or ensemble) to attack, on ``device``; left as it was.
        images: the attacked images and the target (``config.target`` is set from them).
        config: the attack's settings.
        attack: a registered attack (:func:`~patchscope.attacks.list_attacks`).
        device: where to run.
        meta: extra facts for the patch's ``meta`` (e.g. the model's name).
        measure: measure the patch (under torch.distributed every rank measures a share: give all ranks the same).
        progress: show a progress bar.
        options: the attack's own options (``views``, ``start``, ``checkpoint``, ``resume``, ...).

    Returns:
        An :class:`AttackResult` (universal patches are checked on at most :data:`CHECK_IMAGES` of their images).
    """
    config = replace(config, target=images.target)
    attacker = create_attack(attack, model, config, device=str(device), progress=progress, **options)
    x, y = images.images.float_images(), images.images.labels
    started = time.time()
    patch = attacker(x, y)
    seconds = time.time() - started
    patch.meta.update(_patch_meta(images, meta))
    if isinstance(patch, PerImagePatches):
        patch.images_hash = images.images.data_hash()
    else:
        x, y = x[:CHECK_IMAGES], y[:CHECK_IMAGES]
    check = (
        patch_success(model, x, y, patch, images.target, DEFAULT_GRID, device=device, progress=progress)
        if measure
        else None
    )
    nan = float("nan")
    return AttackResult(
        patch,
        attack,
        len(images.images),
        seconds,
        check.targeted_success if check is not None and images.target is not None else None,
        check.untargeted_success if check is not None else nan,
        check.clean_accuracy if check is not None else nan,
        list(getattr(attacker, "history", [])),
    )


def _patch_meta(images: AttackImages, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a patch made on ``images`` records about them (``meta``: the caller's extra facts)."""
    return {
        "source": images.source_name,
        "target": images.target_name,
        "data": images.images.name,
        "data_hash": images.data_hash,
        **(meta or {}),
    }
