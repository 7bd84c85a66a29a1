"""How well a patch works: success over viewing conditions, clean baselines, transfer across models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from patchscope.attacks.eot import ViewParams, ViewRanges, fixed_view, render, sample_view, view
from patchscope.attacks.patch import Patch, PerImagePatches
from patchscope.data import ImageSet, ImageStream, resolve_class
from patchscope.distributed import all_sum, merge_rows, my_blocks
from patchscope.errors import PatchscopeError
from patchscope.eval.conditions import DEFAULT_GRID, Condition, condition_grid
from patchscope.eval.lighting import LightingReference, SignLighting, estimate_lighting, lighting_reference
from patchscope.models.batching import resolve_batch_size
from patchscope.models.wrapper import check_finite, nonfinite_rows
from patchscope.progress import progress_bar


def condition_views(
    conditions: Sequence[Condition], n: int, patch: Patch | PerImagePatches, seed: int = 0
) -> ViewParams:
    """Views for ``n`` images under each condition, stacked condition-major: (len(conditions) * n) rows.

    Per-image on-object patches keep each image's own place. A sticker gets a seeded random place, rotation and
    scale per image (the same for every condition).
    """
    rows = [
        fixed_view(
            n,
            patch.image_size,
            patch.side,
            patch.placement,
            patch.location,
            **{k: v for k, v in c.items() if k != "factor"},
        )
        for c in conditions
    ]
    views = ViewParams.cat(rows)
    if patch.placement == "sticker":
        g = torch.Generator().manual_seed(seed)
        s = sample_view(n, ViewRanges(), patch.image_size, patch.side, "sticker", None, g)
        c = len(conditions)
        views.location, views.patch_rotation, views.patch_scale = (
            s.location.repeat(c, 1),
            s.patch_rotation.repeat(c),
            s.patch_scale.repeat(c),
        )
    return views


@dataclass(frozen=True)
class PatchSuccess:
    """What :func:`patch_success` measured; the rates are means over (condition, image) pairs.

    Attributes:
        targeted_success: share classified as the target (0 without a target).
        untargeted_success: share not classified as their own label (fooled).
        target_confidence: mean probability of the target (0 without a target).
        clean_accuracy: share right under the same conditions without the patch.
        patch_area: the patch's share of the image.
        images: how many images were measured.
        conditions: one dict per condition: its settings and the four rates above (rounded to 4 places).
        image_success: with ``by_image``, per image the share of conditions it was won in; else None.
    """

    targeted_success: float
    untargeted_success: float
    target_confidence: float
    clean_accuracy: float
    patch_area: float
    images: int
    conditions: list[dict[str, Any]] = field(default_factory=list)
    image_success: list[float] | None = None

    def success(self, targeted: bool) -> float:
        """``targeted_success`` if ``targeted`` else ``untargeted_success``."""
        return self.targeted_success if targeted else self.untargeted_success

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``image_success`` only when it was measured)."""
        out = asdict(self)
        if self.image_success is None:
            out.pop("image_success")
        return out


@torch.no_grad()
def patch_success(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    patch: Patch | PerImagePatches,
    target: int | None,
    conditions: Sequence[Condition] = DEFAULT_GRID,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    by_image: bool = False,
    progress: bool = False,
    lighting: SignLighting | None = None,
) -> PatchSuccess:
    """Success of ``patch`` on ``images`` under every condition; the means are over (condition, image).
    Per-image patches (N, 3, s, s) go on the N ``images`` in order, patch n on image n.
    ``lighting``: each image's own lighting (:func:`~patchscope.eval.lighting.estimate_lighting`), put on the patch
    before it is pasted there, then the same conditions; None: the patch's own colours (the uniform grid alone).
    ``by_image``: also ``image_success``, a list of N shares of the conditions each image was won in
    (targeted, or untargeted without a target), to see which images resist.
    ``progress``: a progress line of its own (the measurement can take longer than the attack).

    Under ``torch.distributed`` every rank calls it with the same arguments, measures every world-th batch and
    gets the whole result, equal to one process's.

    Returns:
        A :class:`PatchSuccess` (the rates, and per condition in ``conditions``; clean accuracy without the patch).

    >>> from patchscope.attacks import Patch; from patchscope.models.archs import cnn
    >>> from patchscope.models import Classifier
    >>> m, x = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"]).eval(), torch.rand(4, 3, 32, 32)
    >>> p = Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (12, 12))
    >>> r = patch_success(m, x, torch.zeros(4, dtype=torch.long), p, 1, [{}, {"brightness": 0.5}])
    >>> r.images, len(r.conditions), 0 <= r.targeted_success <= r.untargeted_success <= 1
    (4, 2, True)
    """
    n, c = len(images), len(conditions)
    _check_request(model, images, labels, patch, target, c)
    if lighting is not None and tuple(lighting.gain.shape) != (n, 3):
        raise PatchscopeError(f"lighting for {len(lighting.gain)} images given for {n} images")
    batch_size = resolve_batch_size(model, batch_size, int(images.shape[-1]), device)
    views = condition_views(conditions, n, patch).to(device)
    if lighting is not None:  # the same light for an image under every condition
        views.patch_gain, views.patch_offset = (t.to(device).repeat(c, 1) for t in (lighting.gain, lighting.offset))
    stats = _measure(model, images.to(device), labels.to(device), patch, views, target, batch_size, progress)
    per, each = _per_condition(stats.view(c, n, 4), conditions)
    won = stats.view(c, n, 4)[:, :, 0 if target is not None else 1].mean(0).cpu().tolist() if by_image else None
    tgt, untgt, conf, clean = (float(per[:, i].mean()) for i in range(4))
    return PatchSuccess(tgt, untgt, conf, clean, patch.area_fraction, n, each, won)


def _measure(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    patch: Patch | PerImagePatches,
    views: ViewParams,
    target: int | None,
    batch_size: int,
    progress: bool,
) -> torch.Tensor:
    """The (C * N, 4) rows of :func:`_batch_stats` for ``views`` (condition-major) of the N ``images``, batch by
    batch (under torch.distributed: this rank's batches, then all of them); refuses logits that are not finite."""
    n = len(images)
    rows_all = len(views)
    own = isinstance(patch, PerImagePatches)
    pixels, mask = patch.pixels.to(images.device), patch.mask.to(images.device)
    stats = torch.zeros(rows_all, 4, device=images.device)
    bad = torch.zeros((), dtype=torch.long, device=images.device)
    blocks = my_blocks(rows_all, batch_size)
    with progress_bar(len(blocks), f"measuring the patch: {n} images x {rows_all // n} views", progress) as update:
        for start in blocks:
            rows = torch.arange(start, min(start + batch_size, rows_all), device=images.device)
            x, y = images[rows % n], labels[rows % n]
            stats[rows], wrong = _batch_stats(
                model, x, y, pixels[rows % n] if own else pixels, mask, views[rows], target
            )
            bad += wrong
            update()
    merge_rows(stats)
    all_sum(bad)
    check_finite(bad, getattr(model, "name", "the model"))
    return stats


def _per_condition(stats: torch.Tensor, conditions: Sequence[Condition]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The (C, N, 4) per-image rates averaged per condition: a (C, 4) tensor, and one dict per condition (its
    settings and the four rates, rounded to 4 places)."""
    per = stats.mean(1).cpu()
    keys = ("targeted_success", "untargeted_success", "target_confidence", "clean_accuracy")
    each = [
        {**cond, **{k: round(float(per[j, i]), 4) for i, k in enumerate(keys)}} for j, cond in enumerate(conditions)
    ]
    return per, each


def _batch_stats(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    pixels: torch.Tensor,
    mask: torch.Tensor,
    v: ViewParams,
    target: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image of the batch ``x`` seen as ``v``: (B, 4) targeted hit, fooled, target probability and clean hit;
    and how many of the logits' rows are not finite."""
    logits, clean_logits = model(render(x, pixels, mask, v)), model(view(x, v))
    bad = nonfinite_rows(logits) + nonfinite_rows(clean_logits)
    probs, clean = logits.softmax(1), clean_logits.argmax(1)
    pred = probs.argmax(1)
    tgt = (pred == target) if target is not None else torch.zeros_like(pred, dtype=torch.bool)
    conf = probs[:, target] if target is not None else torch.zeros_like(probs[:, 0])
    return torch.stack([tgt.float(), (pred != y).float(), conf, (clean == y).float()], 1), bad


def _check_request(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    patch: Patch | PerImagePatches,
    target: int | None,
    conditions: int,
) -> None:
    """Refuse what :func:`patch_success` cannot measure: no images or conditions, a target out of range or equal
    to every label, sizes that disagree, per-image patches for another number of images."""
    n = len(images)
    if n == 0 or conditions == 0:
        raise PatchscopeError(
            "measuring a patch needs at least one image and one viewing condition, "
            f"got {n} images and {conditions} conditions"
        )
    classes = getattr(model, "classes", None)
    if target is not None and classes is not None and not 0 <= target < len(classes):
        raise PatchscopeError(f"target must be a class id in 0..{len(classes) - 1}, got {target}", params=("target",))
    if target is not None and bool((labels == target).all()):
        raise PatchscopeError(
            f"target must differ from the class of the patched images, got {target} for both", params=("target",)
        )
    _check_sizes(model, images, patch)
    if isinstance(patch, PerImagePatches) and len(patch) != n:
        raise PatchscopeError(
            f"{len(patch)} per-image patches for {n} images: they go only on the images they were made for"
        )


def _check_sizes(model: nn.Module, images: torch.Tensor, patch: Patch | PerImagePatches) -> None:
    """Refuse images of another size than the model takes, or a patch made for another size than the images."""
    size, name = getattr(model, "input_size", None), getattr(model, "name", "the model")
    if images.ndim != 4 or (size is not None and images.shape[-1] != size):
        raise PatchscopeError(f"images of shape {tuple(images.shape)}: {name} takes (N, 3, {size}, {size})")
    if patch.image_size != images.shape[-1]:
        raise PatchscopeError(
            f"the patch was made for {patch.image_size}px images, these are {images.shape[-1]}px "
            "(Patch.resized gives the same patch at another size)",
            params=("patch",),
        )


@dataclass(frozen=True)
class TransferMatrix:
    """What :func:`transfer_matrix` measured: ``success[patch_name][model_name]``, the ``metric`` of each patch on
    each model (``targeted_success``, or ``untargeted_success`` without a target)."""

    metric: str
    success: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"metric": ..., "matrix": {patch: {model: success}}}``."""
        return {"metric": self.metric, "matrix": {p: dict(row) for p, row in self.success.items()}}


def transfer_matrix(
    models: dict[str, nn.Module],
    patches: dict[str, Patch],
    images: torch.Tensor | Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    target: int | None,
    conditions: Sequence[Condition] = DEFAULT_GRID,
    device: str | torch.device = "cpu",
) -> TransferMatrix:
    """Targeted (or untargeted) success of each patch on each model.

    ``images``: one batch for every model, or each model's own by name (the same images prepared at each model's
    input size, in the same order: ``labels`` fits all). A patch made for another image size is resized to the
    model's, keeping its share of the image and its place (:meth:`Patch.resized`): transfer across resolutions.

    Returns:
        A :class:`TransferMatrix`: ``success[patch_name][model_name]``.
    """

    def mine(name: str) -> torch.Tensor:
        return images[name] if isinstance(images, Mapping) else images

    def one(model: nn.Module, x: torch.Tensor, patch: Patch) -> float:
        m = patch_success(model, x, labels, patch.resized(x.shape[-1]), target, conditions, device=device)
        return m.success(target is not None)

    success = {p: {m: one(model, mine(m), patch) for m, model in models.items()} for p, patch in patches.items()}
    return TransferMatrix("targeted_success" if target is not None else "untargeted_success", success)


@dataclass
class PatchMeasurement:
    """A patch's success on a class's images over viewing conditions (shares of (condition, image) pairs).

    ``targeted_success`` is None for an untargeted patch; ``source_clean_accuracy`` is the model's accuracy on the
    same source images under the same conditions without the patch; ``conditions`` has one dict per condition.
    """

    source: str
    target: str | None
    targeted_success: float | None
    untargeted_success: float
    target_confidence: float
    source_clean_accuracy: float
    patch_area: float
    images: int
    conditions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, conditions: bool = True) -> dict[str, Any]:
        """JSON-ready; ``conditions=False`` leaves out the per-condition list."""
        out = asdict(self)
        if not conditions:
            out.pop("conditions")
        return out


def measure_patch(
    model: nn.Module,
    data: ImageSet | ImageStream,
    patch: Patch | PerImagePatches,
    source: str | int | None = None,
    target: str | int | None = None,
    conditions: str | Sequence[Condition] = "default",
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    lighting: LightingReference | None = None,
) -> PatchMeasurement:
    """Success of ``patch`` on the ``source`` images of ``data`` over viewing ``conditions``.

    Args:
        model: the classifier (or a defended one), on ``device``.
        data: images with class names, in memory or streamed; only the source class's are used and read (for
            per-image patches: the first ``len(patch)``, which must be exactly the images they were made for).
        patch: a universal or per-image patch.
        source: the attacked class (name or id); default: the patch's own (``meta["source"]``).
        target: the class the patch aims for; default: the patch's own; ``""``, or None on both: untargeted.
        conditions: ``default``, ``none``, ``sweep`` (:func:`condition_grid`) or a list of conditions.
        batch_size: rendered images per forward pass (None: as many as the memory budget holds).
        device: where to run.
        lighting: the class's typical sign (:func:`~patchscope.eval.lighting.lighting_reference`): the patch is
            then shown under each sign's own lighting, estimated against it; None: in its own colours.
        progress: a progress line on stderr while the rendered images are classified.

    Returns:
        A :class:`PatchMeasurement`.
    """
    src = _source(model, patch, source)
    tgt_name = target if target is not None else patch.meta.get("target")
    tgt = resolve_class(tgt_name, data.classes) if tgt_name not in (None, "") else None
    victims = _victims(data, src, patch)
    grid = condition_grid(conditions) if isinstance(conditions, str) else list(conditions)
    x = victims.float_images()
    lit = estimate_lighting(x, lighting) if lighting is not None else None
    m = patch_success(model, x, victims.labels, patch, tgt, grid, batch_size, device, lighting=lit, progress=progress)
    return PatchMeasurement(
        data.classes[int(victims.labels[0])],
        data.classes[tgt] if tgt is not None else None,
        m.targeted_success if tgt is not None else None,
        m.untargeted_success,
        m.target_confidence,
        m.clean_accuracy,
        m.patch_area,
        m.images,
        m.conditions,
    )


def _source(model: nn.Module, patch: Patch | PerImagePatches, source: str | int | None) -> str | int:
    """The class the patch attacks (``source``, else the patch's own), once the patch fits the model's input."""
    name = getattr(model, "name", "the model")
    if patch.image_size != getattr(model, "input_size", patch.image_size):
        raise PatchscopeError(
            f"the patch was made for {patch.image_size}px images but {name} takes {model.input_size}px",
            params=("patch",),
        )
    src = source if source is not None else patch.meta.get("source")
    if src is None:
        raise PatchscopeError("source: which class does the patch attack? (name or id)", params=("source",))
    return src


def _victims(data: ImageSet | ImageStream, source: str | int, patch: Patch | PerImagePatches) -> ImageSet:
    """The source class's images, in memory (from a stream: only those are read)."""
    victims = data.of_class(source)
    if len(victims) == 0:
        raise PatchscopeError(f"the data holds no images of class {source!r}")
    if isinstance(patch, PerImagePatches):  # the first len(patch) source images, exactly those attacked
        victims = victims.head(len(patch)).load()
        if len(victims) != len(patch) or victims.data_hash() != patch.images_hash:
            raise PatchscopeError(
                f"these {len(patch)} per-image patches were made for other images "
                f"({patch.meta.get('data')}, class {patch.meta.get('source')}): "
                "measure them on their attack's data and source",
                params=("data", "source"),
            )
    return victims.load()


@dataclass
class LightingComparison:
    """A patch's success with its own colours on every sign (``uniform``: the viewing grid alone) and under each
    sign's own lighting (``per_sign``: the same grid, the patch relit per sign first), side by side; ``lighting``
    summarises the estimated gains and offsets (:meth:`~patchscope.eval.lighting.SignLighting.summary`)."""

    uniform: PatchMeasurement
    per_sign: PatchMeasurement
    lighting: dict[str, float]

    def as_dict(self, conditions: bool = True) -> dict[str, Any]:
        """JSON-ready: the uniform measurement's fields, with ``per_sign_lighting`` (its own fields and the
        lighting summary) beside them."""
        return {
            **self.uniform.as_dict(conditions),
            "per_sign_lighting": {**self.per_sign.as_dict(conditions), **self.lighting},
        }


def compare_lighting(
    model: nn.Module,
    data: ImageSet | ImageStream,
    patch: Patch | PerImagePatches,
    reference: ImageSet | ImageStream,
    source: str | int | None = None,
    target: str | int | None = None,
    conditions: str | Sequence[Condition] = "default",
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
) -> LightingComparison:
    """:func:`measure_patch` twice on the same signs and conditions: with the patch's own colours, and under each
    sign's own lighting, estimated against the source class's typical sign in ``reference`` (the training set's
    images of the class, say; :func:`~patchscope.eval.lighting.lighting_reference`).

    Returns:
        A :class:`LightingComparison`.
    """
    src = _source(model, patch, source)
    typical = reference.of_class(src)
    if len(typical) == 0:
        raise PatchscopeError(f"the lighting reference holds no images of class {src!r}")
    ref = lighting_reference(typical.load().float_images())
    uniform = measure_patch(model, data, patch, src, target, conditions, batch_size, device)
    per_sign = measure_patch(model, data, patch, src, target, conditions, batch_size, device, lighting=ref)
    victims = _victims(data, src, patch).float_images()
    return LightingComparison(uniform, per_sign, estimate_lighting(victims, ref).summary())
