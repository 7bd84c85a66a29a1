"""What the network makes of one view, clean and patched: its top-k, where it looks, how much of each layer's
activation energy the patch moves. One call per change of the scene, so it stays a handful of small forward passes.

>>> import torch
>>> from patchscope.models import Classifier
>>> from patchscope.models.archs import cnn
>>> from patchscope.explore.scene import Camera, Placement, blank_patch, render_scene
>>> m = Classifier(cnn(num_classes=7, width=4, hidden=8), list("abcdefg")).eval()
>>> s = render_scene(torch.rand(3, 32, 32), blank_patch(32), Placement(10.0, 12.0), Camera())
>>> seen = look(m, s)
>>> len(seen.clean_top), seen.heatmap, [layer.name for layer in seen.layers]
(5, 'gradcam', ['stage0', 'stage1', 'stage2'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from patchscope.explain.attention import TopK, attention_rollout, grad_cam, is_token_model, top_probabilities
from patchscope.explain.propagation import trace_layers
from patchscope.explore.scene import Scene
from patchscope.models.wrapper import Classifier

HeatmapMethod = Literal["auto", "gradcam", "rollout"]


@dataclass(frozen=True)
class Guess:
    """One of the model's top classes: its ``id``, ``name`` and softmax ``prob``."""

    id: int
    name: str
    prob: float


@dataclass(frozen=True)
class LayerShare:
    """How far the patch moves one layer (see :mod:`patchscope.explain.propagation`): ``share`` is the energy of the
    change over the energy of the patched activation (None where not finite), ``natural`` the energy off the patch,
    patched over clean."""

    name: str
    grid: tuple[int, int]
    share: float | None
    natural: float | None


@dataclass(frozen=True)
class Look:
    """What :func:`look` found for one scene: the top-k without and with the patch, heatmaps ``(H, W)`` in [0, 1]
    of each view for its own top class (``heatmap``: the method), the heatmaps' share inside the patch's footprint,
    and one :class:`LayerShare` per layer with a spatial grid."""

    clean_top: list[Guess]
    patched_top: list[Guess]
    clean_heat: torch.Tensor
    patched_heat: torch.Tensor
    heatmap: str
    heat_on_patch: tuple[float, float]
    layers: list[LayerShare]

    @property
    def flipped(self) -> bool:
        """Whether the patch changes the top class."""
        return self.clean_top[0].id != self.patched_top[0].id


def _guesses(top: TopK, row: int, classes: tuple[str, ...]) -> list[Guess]:
    probs, ids = top.probs[row].tolist(), top.classes[row].tolist()
    return [Guess(int(c), classes[int(c)] if int(c) < len(classes) else str(c), float(p)) for p, c in zip(probs, ids)]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def heat(model: Classifier, images: torch.Tensor, target: torch.Tensor, method: HeatmapMethod = "auto") -> torch.Tensor:
    """Heatmaps ``(N, H, W)``: attention rollout for a transformer, Grad-CAM for ``target`` otherwise (``auto``)."""
    if method == "rollout" or (method == "auto" and is_token_model(model)):
        return attention_rollout(model, images)
    return grad_cam(model, images, target)


def look(model: Classifier, scene: Scene, k: int = 5, method: HeatmapMethod = "auto") -> Look:
    """The top-``k``, heatmaps and layer shares of ``scene``'s clean and patched view (one batch of two images).

    Args:
        model: the classifier, in eval mode.
        scene: from :func:`~patchscope.explore.scene.render_scene`.
        k: how many classes to list.
        method: ``auto`` (rollout for transformers, else Grad-CAM), ``gradcam`` or ``rollout``.

    Returns:
        A :class:`Look`.
    """
    device = next(model.parameters()).device
    x = torch.cat([scene.clean, scene.patched]).to(device)
    top = top_probabilities(model, x, k)
    maps = heat(model, x, top.classes[:, 0], method).cpu()
    footprint = scene.footprint.to(maps.dtype)
    inside = (maps * footprint).sum((1, 2)) / maps.sum((1, 2)).clamp_min(1e-12)
    traces = trace_layers(model, x[:1], x[1:], scene.footprint.to(device))
    layers = [
        LayerShare(t.name, t.grid, _finite(float(t.adversarial_share()[0])), _finite(float(t.natural_ratio()[0])))
        for t in traces
    ]
    used = "rollout" if method == "rollout" or (method == "auto" and is_token_model(model)) else "gradcam"
    return Look(
        _guesses(top, 0, model.classes),
        _guesses(top, 1, model.classes),
        maps[0],
        maps[1],
        used,
        (float(inside[0]), float(inside[1])),
        layers,
    )
