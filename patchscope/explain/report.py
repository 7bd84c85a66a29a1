"""`patchscope explain` in two calls: :func:`explain_patch` computes attention, propagation and anomalies of a patch
(an :class:`Explanation`); :func:`save_explanation` draws its three figures into a folder.

>>> import torch, tempfile, pathlib
>>> from patchscope.attacks import Patch
>>> from patchscope.models import Classifier
>>> from patchscope.models.archs import cnn
>>> m = Classifier(cnn(num_classes=3, width=4, hidden=8), ["a", "b", "c"]).eval()
>>> p = Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (12, 12))
>>> x, y = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
>>> r = explain_patch(m, x, y, p, 1)
>>> [row["name"] for row in r.layers]
['stage0', 'stage1', 'stage2']
>>> [f.name for f in save_explanation(r, pathlib.Path(tempfile.mkdtemp()))]
['attention.png', 'propagation.png', 'anomaly.png']
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from patchscope.attacks.patch import Patch
from patchscope.errors import PatchscopeError
from patchscope.explain.attention import Attention, Method, default_layer, explain_attention, is_token_model
from patchscope.explain.figures import anomaly_figure, attention_figure, propagation_figure
from patchscope.explain.propagation import apply_patch, patch_footprint, trace_layers
from patchscope.models.wrapper import Classifier

FIGURES = ("attention.png", "propagation.png", "anomaly.png")


def check_patch(model: Classifier, patch: Patch, image_size: int) -> None:
    """Raise :class:`PatchscopeError` unless the patch, the model and the images share one size."""
    if patch.image_size != model.input_size:
        raise PatchscopeError(
            f"the patch was made for {patch.image_size}px images but {model.name} takes {model.input_size}px",
            params=("patch",),
        )
    if image_size != model.input_size:
        raise PatchscopeError(f"the images are {image_size}px but {model.name} takes {model.input_size}px")


def _top(probs: torch.Tensor, classes: torch.Tensor, names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"class": names[int(c)], "id": int(c), "prob": round(float(p), 6)} for p, c in zip(probs.cpu(), classes.cpu())
    ]


@dataclass(frozen=True)
class ExplainedImage:
    """What the attention figure of one image shows: the image clean and patched ``(3, H, W)``, their heatmaps
    ``(H, W)``, the top classes before and after, the patch's footprint ``(H, W)``."""

    clean: torch.Tensor
    patched: torch.Tensor
    attention: Attention
    footprint: torch.Tensor
    label: int
    heat_label: str


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain_patch` found; :meth:`as_dict` is the JSON (``explain.json`` less the run's facts).

    Attributes:
        model: the model's name.
        images: how many images were explained.
        footprint: the patch's place, side and pixels on the image.
        heatmap: the heatmap method (``gradcam`` or ``rollout``), its layer, whether the model uses tokens.
        clean_accuracy: share of the images the model gets right without the patch.
        patched_accuracy: with it.
        target: the patch's target class (None if untargeted).
        target_rate: share classified as the target with the patch (None without a target).
        attention_in_patch: mean heatmap share inside the patch, ``clean`` and ``patched``.
        layers: one row per layer over all images (adversarial share, natural ratio, max_z, ...).
        single: the same for the image at ``index``, with its top classes before and after.
        image: what the attention figure of that image draws (not in :meth:`as_dict`).
        classes: the class names.
    """

    model: str
    images: int
    footprint: dict[str, Any]
    heatmap: dict[str, Any]
    clean_accuracy: float
    patched_accuracy: float
    target: str | None
    target_rate: float | None
    attention_in_patch: dict[str, float]
    layers: list[dict[str, Any]]
    single: dict[str, Any]
    image: ExplainedImage = field(repr=False, compare=False)
    classes: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field but the figure data."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("image", "classes")}


def explain_patch(
    model: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    patch: Patch,
    index: int = 0,
    method: Method = "auto",
    batch_size: int = 256,
) -> Explanation:
    """Explain ``patch`` on ``images`` (N, 3, H, W) in [0, 1]: aggregate ``layers`` over all N, ``single`` for
    ``images[index]`` (its ``max_z`` against the clean maxima of all N). Nothing is written: :func:`save_explanation`
    draws the figures.

    Args:
        model: the classifier.
        images: the images, on the model's device; ``labels`` (N,) their classes.
        patch: an on-object or sticker patch made for the images' size.
        index: the image shown on its own.
        method: heatmaps by ``gradcam``, ``rollout`` (token models) or ``auto``.
        batch_size: images per forward pass.

    Returns:
        An :class:`Explanation`.
    """
    n = len(images)
    if n == 0:
        raise PatchscopeError("no images to explain")
    if not 0 <= index < n:
        raise PatchscopeError(f"index {index} is out of range: there are {n} images (0..{n - 1})", params=("index",))
    check_patch(model, patch, int(images.shape[-1]))
    names = tuple(getattr(model, "classes", ())) or tuple(str(i) for i in range(int(labels.max()) + 1))
    fp, patched = patch_footprint(patch, images.device), apply_patch(images, patch)
    traces = trace_layers(model, images, patched, fp, batch_size)
    one = trace_layers(model, images[index : index + 1], patched[index : index + 1], fp, batch_size)
    rows = [t.summary() for t in traces]
    totals = _attention_totals(model, images, patched, labels, fp, method, batch_size)
    a1 = explain_attention(model, images[index : index + 1], patched[index : index + 1], method)
    heatmap, target = _heatmap(model, method), patch.meta.get("target")
    tgt = names.index(target) if target in names else None
    pred_after, y = totals.pop("pred_after"), labels.to(images.device)
    return Explanation(
        model.name,
        n,
        {
            "placement": "on-object",
            "location": list(patch.location) if patch.location else None,
            "side": patch.side,
            "pixels": int(fp.sum()),
        },
        heatmap,
        float((totals.pop("pred_before") == y).float().mean()),
        float((pred_after == y).float().mean()),
        target,
        float((pred_after == tgt).float().mean()) if tgt is not None else None,
        {k: float(v.mean()) for k, v in totals.items()},
        rows,
        _single(a1, fp, index, names[int(labels[index])], names, [s.summary(reference=t) for s, t in zip(one, traces)]),
        ExplainedImage(images[index], patched[index], a1, fp, int(labels[index]), _heat_label(heatmap)),
        names,
    )


def _heatmap(model: Classifier, method: Method) -> dict[str, Any]:
    """The heatmap's method (``rollout`` or ``gradcam``), its layer, and whether the model uses tokens."""
    rollout = method == "rollout"
    layer = None if rollout else default_layer(model)
    return {"method": "rollout" if rollout else "gradcam", "layer": layer, "tokens": is_token_model(model)}


def _heat_label(heatmap: dict[str, Any]) -> str:
    """The heatmap's name in the attention figure."""
    return "attention rollout" if heatmap["method"] == "rollout" else f"Grad-CAM, {heatmap['layer']}"


def _single(
    a1: Attention,
    footprint: torch.Tensor,
    index: int,
    label: str,
    names: tuple[str, ...],
    layers: list[dict[str, Any]],
) -> dict[str, Any]:
    """The single image's part of the result: its label, top classes before and after, heatmap mass, layers."""
    return {
        "index": index,
        "label": label,
        "before": _top(a1.before.probs[0], a1.before.classes[0], names),
        "after": _top(a1.after.probs[0], a1.after.classes[0], names),
        "attention_in_patch": dict(zip(("clean", "patched"), (float(v[0]) for v in a1.mass_inside(footprint)))),
        "layers": layers,
    }


def _attention_totals(
    model: Classifier,
    images: torch.Tensor,
    patched: torch.Tensor,
    labels: torch.Tensor,
    footprint: torch.Tensor,
    method: Method,
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """Per image, batch by batch: the heatmap mass inside the footprint (``clean``, ``patched``) and the top class
    before and after the patch (``pred_before``, ``pred_after``)."""
    parts: dict[str, list[torch.Tensor]] = {"clean": [], "patched": [], "pred_before": [], "pred_after": []}
    for start in range(0, len(images), batch_size):
        a = explain_attention(model, images[start : start + batch_size], patched[start : start + batch_size], method)
        ci, pi = a.mass_inside(footprint)
        for key, value in zip(parts, (ci, pi, a.before.classes[:, 0], a.after.classes[:, 0])):
            parts[key].append(value)
    return {k: torch.cat(v) for k, v in parts.items()}


def save_explanation(result: Explanation, out: Path) -> list[Path]:
    """Draw ``result``'s three figures into ``out`` (created): attention for the single image, propagation and
    anomalies over the layers.

    Returns:
        The files written: ``out/attention.png``, ``out/propagation.png``, ``out/anomaly.png``.
    """
    out.mkdir(parents=True, exist_ok=True)
    one, index = result.image, result.single["index"]
    a1 = one.attention
    attention_figure(
        one.clean,
        one.patched,
        a1.clean[0],
        a1.patched[0],
        (a1.before.probs[0], a1.before.classes[0]),
        (a1.after.probs[0], a1.after.classes[0]),
        result.classes,
        out / "attention.png",
        one.footprint,
        one.label,
        one.heat_label,
    )
    title = f"{result.model}: {result.images} images"
    single = result.single["layers"]
    grows = f"How the patch's signal grows layer by layer ({title}, dashed: image {index})"
    propagation_figure(result.layers, out / "propagation.png", single, grows)
    anomaly_figure(result.layers, out / "anomaly.png", single, f"Abnormal activations ({title}, dots: image {index})")
    return [out / f for f in FIGURES]
