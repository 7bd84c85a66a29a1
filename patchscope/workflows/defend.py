"""An empirical defense against a patch: clean accuracy and the patch's success with and without it, and optionally an
adaptive attacker who optimises a new patch through the defense (BPDA where the defense's registration says so).

>>> from patchscope.attacks import Patch
>>> from patchscope.data import load_data
>>> from patchscope.models import create_model
>>> data = load_data("demo")
>>> model = create_model("gtsrb-cnn")
>>> meta = {"source": "stop", "target": "yield"}
>>> patch = Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (12, 12), 32, meta)
>>> r = defend_patch(model, data, patch, "median", conditions="none", limit=8)
>>> r.images, r.source_images, r.adaptive is None
(8, 8, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from patchscope.attacks import AttackConfig, Patch, create_attack, is_named_shape, patch_side
from patchscope.attacks.losses import LOSSES
from patchscope.attacks.patch import PerImagePatches
from patchscope.data import ImageSet, ImageStream, resolve_class
from patchscope.defenses import create_defense, defense_spec
from patchscope.errors import PatchscopeError
from patchscope.eval.conditions import Condition
from patchscope.eval.patch_metrics import PatchMeasurement, measure_patch
from patchscope.models.train import accuracy
from patchscope.registry import Spec
from patchscope.validate import check_batch, check_choice, check_optional_positive, check_positive


@dataclass
class AdaptiveResult:
    """A new patch optimised through the defense (``bpda``: with straight-through gradients), measured both ways."""

    patch: Patch
    steps: int
    bpda: bool
    seconds: float
    undefended: PatchMeasurement
    defended: PatchMeasurement


@dataclass
class DefenseResult:
    """What :func:`defend_patch` measured; accuracies on the first ``images`` images, patches on ``source_images``."""

    defense: str
    options: dict[str, Any]
    data_hash: str
    images: int
    source_images: int
    clean_accuracy: float
    defended_clean_accuracy: float
    undefended: PatchMeasurement
    defended: PatchMeasurement
    adaptive: AdaptiveResult | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, the per-condition lists left out."""
        out: dict[str, Any] = {
            "defense": self.defense,
            "data_hash": self.data_hash,
            "images": self.images,
            "source_images": self.source_images,
            "clean_accuracy": self.clean_accuracy,
            "defended_clean_accuracy": self.defended_clean_accuracy,
            "patch": {"undefended": self.undefended.as_dict(False), "defended": self.defended.as_dict(False)},
        }
        if self.adaptive is not None:
            a = self.adaptive
            out["adaptive"] = {
                "steps": a.steps,
                "bpda": a.bpda,
                "seconds": round(a.seconds, 1),
                "undefended": a.undefended.as_dict(False),
                "defended": a.defended.as_dict(False),
            }
        return out


def adaptive_config(
    patch: Patch, target: int | None, steps: int, batch_size: int, seed: int, loss: str = "sigmoid"
) -> AttackConfig:
    """An :class:`AttackConfig` for a new patch with the given patch's size, shape, placement and location (a shape
    that cannot be redrawn, e.g. a mask file that is gone, becomes a square of the same area)."""
    made = patch.meta.get("config", {}) if isinstance(patch.meta.get("config"), dict) else {}
    n = patch.image_size
    shape = made["shape"] if is_named_shape(made.get("shape")) else "square"
    size = float(made.get("size", patch.side**2 / n**2))
    if patch_side(size, n, shape) != patch.side:
        shape, size = "square", patch.side**2 / n**2
    location = (
        (patch.location[0], patch.location[1])
        if patch.placement == "on-object" and patch.location is not None
        else None
    )
    return AttackConfig(
        size=size,
        shape=shape,
        placement=patch.placement,
        location=location,
        target=target,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        loss=loss,
    )


def defend_patch(
    model: nn.Module,
    data: ImageSet | ImageStream,
    patch: Patch,
    defense: str,
    *,
    options: Mapping[str, Any] | None = None,
    source: str | int | None = None,
    target: str | int | None = None,
    conditions: str | list[Condition] = "default",
    limit: int | None = None,
    fit_images: torch.Tensor | None = None,
    adaptive: bool = False,
    steps: int = 200,
    attack_batch_size: int = 64,
    attack_loss: str = "sigmoid",
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    meta: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> DefenseResult:
    """Measure the registered ``defense`` on ``model`` against ``patch``.

    Args:
        model: the classifier, on ``device``.
        data: the images: the first ``limit`` for clean accuracy, the first ``limit`` of the source class for the patch.
        patch: a universal patch.
        defense: a registered defense (:func:`~patchscope.defenses.list_defenses`).
        options: the defense's options (e.g. ``{"kernel": 3}``).
        source: the attacked class; default: the patch's own.
        target: the class aimed for; default: the patch's own (None on both: untargeted).
        conditions: viewing conditions (``default``, ``none``, ``sweep`` or a list).
        limit: at most this many images (and source images).
        fit_images: (N,3,H,W) clean images for defenses that measure themselves first (default: the first 1024 of
            ``data``).
        adaptive: also optimise a new patch through the defense for ``steps`` steps of ``attack_batch_size``.
        steps: the adaptive attack's steps.
        attack_batch_size: the adaptive attack's batch.
        attack_loss: the adaptive attack's objective (:data:`~patchscope.attacks.losses.LOSSES`).
        seed: the adaptive attack's seed.
        batch_size: images per forward pass when measuring (None: as many as the memory budget holds).
        device: where to run.
        meta: extra facts for the adaptive patch's ``meta`` (e.g. the model's name).
        progress: show the adaptive attack's progress bar.

    Returns:
        A :class:`DefenseResult`.
    """
    _check_defend_options(patch, steps, attack_batch_size, attack_loss, batch_size, limit)
    spec, defended = _defended(defense, model, data, fit_images, options, device)
    clean, victims, src, tgt = _defense_images(data, patch, source, target, limit)
    measure = partial(_measure, victims, src, tgt, conditions, batch_size, device)
    result = _defense_result(defense, options, clean, victims, (model, defended), measure, patch, batch_size, device)
    if adaptive:
        config = adaptive_config(patch, tgt, steps, attack_batch_size, seed, attack_loss)
        made: dict[str, Any] = {"data": data.name, "progress": progress, "meta": meta}
        result.adaptive = _adaptive_result(result, (model, defended), config, victims, measure, spec, device, **made)
    return result


Measure = Callable[[nn.Module, Patch], PatchMeasurement]


def _measure(
    victims: ImageSet,
    source: str | int,
    target: int | None,
    conditions: str | list[Condition],
    batch_size: int | None,
    device: str | torch.device,
    model: nn.Module,
    patch: Patch,
) -> PatchMeasurement:
    return measure_patch(model, victims, patch, source, target, conditions, batch_size, device)


def _defended(
    defense: str,
    model: nn.Module,
    data: ImageSet | ImageStream,
    fit_images: torch.Tensor | None,
    options: Mapping[str, Any] | None,
    device: str | torch.device,
) -> tuple[Spec, nn.Module]:
    """The registered ``defense``'s spec and the defense around ``model`` (fitted on ``fit_images`` or the first 1024
    images of ``data`` if it measures itself first)."""
    spec = defense_spec(defense)
    if spec.takes("clean_images") and fit_images is None:
        fit_images = data.head(1024).float_images(device)
    return spec, create_defense(defense, model, clean_images=fit_images, **dict(options or {}))


def _defense_images(
    data: ImageSet | ImageStream, patch: Patch, source: str | int | None, target: str | int | None, limit: int | None
) -> tuple[ImageSet | ImageStream, ImageSet, str | int, int | None]:
    """The clean images, the source class's images (loaded), the source and the target class (None: untargeted)."""
    src = source if source is not None else patch.meta.get("source")
    if src is None:
        raise PatchscopeError("source: which class does the patch attack? (name or id)", params=("source",))
    clean, victims = data.head(limit), data.of_class(src).head(limit).load()  # a stream: the clean pass streams
    tgt_name = target if target is not None else patch.meta.get("target")
    tgt = resolve_class(tgt_name, data.classes) if tgt_name is not None else None
    return clean, victims, src, tgt


def _defense_result(
    defense: str,
    options: Mapping[str, Any] | None,
    clean: ImageSet | ImageStream,
    victims: ImageSet,
    models: tuple[nn.Module, nn.Module],
    measure: Measure,
    patch: Patch,
    batch_size: int | None,
    device: str | torch.device,
) -> DefenseResult:
    """Clean accuracy and ``patch`` measured on the bare and the defended model (``models``)."""
    bare, defended = models
    return DefenseResult(
        defense,
        {k: v for k, v in (options or {}).items() if v is not None},
        clean.data_hash(),
        len(clean),
        len(victims),
        accuracy(bare, clean, device, batch_size),
        accuracy(defended, clean, device, batch_size),
        measure(bare, patch),
        measure(defended, patch),
    )


def _adaptive_result(
    result: DefenseResult,
    models: tuple[nn.Module, nn.Module],
    config: AttackConfig,
    victims: ImageSet,
    measure: Measure,
    spec: Spec,
    device: str | torch.device,
    *,
    data: str,
    progress: bool,
    meta: Mapping[str, Any] | None,
) -> AdaptiveResult:
    """A new patch optimised with ``config`` through the defended model (``models``: bare, defended), measured."""
    bare, defended = models
    started = time.time()
    new = create_attack("universal", defended, config, device=str(device), progress=progress)(
        victims.float_images(), victims.labels
    )
    new.meta.update(_adaptive_meta(result, result.defense, data, meta))
    return AdaptiveResult(
        new, config.steps, spec.meta["bpda"], time.time() - started, measure(bare, new), measure(defended, new)
    )


def _check_defend_options(
    patch: Patch, steps: int, attack_batch_size: int, attack_loss: str, batch_size: int | None, limit: int | None
) -> None:
    """Raise :class:`PatchscopeError` (naming the option) on what :func:`defend_patch` cannot measure."""
    if min(steps, attack_batch_size, 1 if batch_size is None else batch_size) < 1:
        raise PatchscopeError(
            "steps, attack_batch_size and batch_size must be at least 1",
            params=("steps", "attack_batch_size", "batch_size"),
        )
    check_positive("steps", steps, 10**7)
    check_batch("attack_batch_size", attack_batch_size)
    check_choice("attack_loss", attack_loss, LOSSES)
    if batch_size is not None:
        check_batch("batch_size", batch_size)
    check_optional_positive("limit", limit)
    if isinstance(patch, PerImagePatches):
        raise PatchscopeError(
            "patch: a defense is measured against a universal patch, not per-image ones", params=("patch",)
        )


def _adaptive_meta(result: DefenseResult, defense: str, data: str, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an adaptive patch made through ``defense`` records about itself (``meta``: the caller's extra facts)."""
    return {
        "defense": defense,
        "source": result.undefended.source,
        "target": result.undefended.target,
        "data": data,
        "adaptive": True,
        **(meta or {}),
    }
