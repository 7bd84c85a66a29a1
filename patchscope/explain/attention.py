"""Where the model looks (Grad-CAM, attention rollout) and how its top-k probabilities move.

Every heatmap is ``(N, H, W)``, upsampled to the image size, each image scaled to a peak of 1
(an all-zero map stays zero), and kept as a tensor on the images' device.

* CNNs: captum's ``LayerGradCam`` on a stage output ``(N, C, h, w)`` (default: the last stage).
* ViTs: ``LayerGradCam`` on a block's token output reshaped to the token grid ``(N, D, g, g)``
  (class token dropped; default: the second-to-last block, since only the class token of the
  last block reaches the head and the gradient on its grid tokens is zero), or attention rollout
  over every block's ``last_attention``.

>>> import torch
>>> from patchscope.models import Classifier
>>> from patchscope.models.archs import cnn
>>> m = Classifier(cnn(num_classes=3, width=4, hidden=8), ["a", "b", "c"]).eval()
>>> heatmaps(m, torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 32, 32])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from patchscope.models.wrapper import Classifier

Method = Literal["auto", "gradcam", "rollout"]


class TokenGrid(nn.Module):
    """Tokens ``(N, 1 + g*g, D)`` to a grid ``(N, D, g, g)`` without the class token (Grad-CAM's hook point).

    >>> TokenGrid()(torch.rand(2, 65, 8)).shape
    torch.Size([2, 8, 8, 8])
    """

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, t, d = tokens.shape
        g = math.isqrt(t - 1)
        return tokens[:, 1:].transpose(1, 2).reshape(n, d, g, g)


def is_token_model(model: Classifier) -> bool:
    """True when the model's stages are transformer blocks (outputs ``(N, T, D)`` tokens)."""
    return bool(model.stages()) and model.stages()[0][0].startswith("block")


def default_layer(model: Classifier) -> str:
    """The stage Grad-CAM uses by default: the last CNN stage, or a ViT's second-to-last block."""
    names = [n for n, _ in model.stages()]
    return names[-2] if is_token_model(model) and len(names) > 1 else names[-1]


def _stage(model: Classifier, name: str) -> nn.Module:
    stages = dict(model.stages())
    if name not in stages:
        from patchscope.errors import PatchscopeError

        raise PatchscopeError(f"layer {name!r}: choose from {', '.join(stages)}")
    return stages[name]


def _per_image_unit(maps: torch.Tensor) -> torch.Tensor:
    """Scale each ``(N, H, W)`` map to a peak of 1; non-finite values become 0."""
    maps = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    peak = maps.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def grad_cam(
    model: Classifier, images: torch.Tensor, target: torch.Tensor | None = None, layer: str | None = None
) -> torch.Tensor:
    """Grad-CAM ``(N, H, W)`` in [0, 1] for ``target`` (default: each image's predicted class).

    ``images`` (N, 3, H, W) in [0, 1]; ``layer`` a stage name from ``model.stages()``.

    >>> from patchscope.models.archs import vit
    >>> v = Classifier(vit(num_classes=3, dim=16, depth=2, heads=2), ["a", "b", "c"]).eval()
    >>> grad_cam(v, torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 32, 32])
    """
    from captum.attr import LayerAttribution, LayerGradCam

    name = layer or default_layer(model)
    stage = _stage(model, name)
    if target is None:
        with torch.no_grad():
            target = model(images).argmax(1)
    probe: nn.Module = stage
    handle = None
    if is_token_model(model):
        probe = TokenGrid()

        def to_grid(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            grid = probe(out)
            return torch.cat([out[:, :1], grid.flatten(2).transpose(1, 2)], 1)

        handle = stage.register_forward_hook(to_grid)
    try:
        with torch.enable_grad():
            cam = LayerGradCam(model, probe).attribute(images, target=target, relu_attributions=True)
    finally:
        if handle is not None:
            handle.remove()
    cam = LayerAttribution.interpolate(cam.detach(), tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return _per_image_unit(cam[:, 0])


class _KeepsAttention(Protocol):
    """A transformer block that stores its attention map (``(N, heads, T, T)``) while ``keep_attention`` is set."""

    keep_attention: bool
    last_attention: torch.Tensor | None


@torch.no_grad()
def attention_rollout(model: Classifier, images: torch.Tensor, discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout ``(N, H, W)`` in [0, 1]: the class token's attention to each image token.

    Per block: heads averaged, identity added (the residual), rows renormalised; blocks multiplied.
    Each map has its minimum subtracted (the near-uniform floor says nothing about where) before
    the scaling to a peak of 1.
    ``discard_ratio`` zeroes that share of the weakest attentions first (0 keeps all).

    >>> from patchscope.models.archs import vit
    >>> v = Classifier(vit(num_classes=3, dim=16, depth=2, heads=2), ["a", "b", "c"]).eval()
    >>> attention_rollout(v, torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 32, 32])
    """
    blocks = [m for _, m in model.stages()]
    if not is_token_model(model):
        from patchscope.errors import PatchscopeError

        raise PatchscopeError("attention rollout needs a ViT (transformer blocks with a class token)")
    if all(hasattr(b, "keep_attention") for b in blocks):
        attns = [a.mean(1) for a in _kept_attention(model, images, blocks)]
    else:
        attns = [a.mean(1) for a in _hooked_attention(model, images, blocks)]
    n, t, _ = attns[0].shape
    eye = torch.eye(t, device=images.device, dtype=attns[0].dtype)
    rollout = eye.expand(n, t, t)
    for a in attns:
        if discard_ratio > 0:
            cut = torch.quantile(a.flatten(1), discard_ratio, dim=1).view(n, 1, 1)
            a = torch.where(a < cut, torch.zeros_like(a), a)
        a = a + eye
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    g = math.isqrt(t - 1)
    cls = rollout[:, 0, 1:].reshape(n, 1, g, g)
    cls = cls - cls.flatten(1).amin(1).view(n, 1, 1, 1)  # drop the uniform floor the residual adds
    return _per_image_unit(
        F.interpolate(cls, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    )


def _kept_attention(model: Classifier, images: torch.Tensor, stages: list[Any]) -> list[torch.Tensor]:
    """Each block's attention ``(N, heads, T, T)`` from the zoo ViT's ``keep_attention`` switch."""
    blocks = cast(list[_KeepsAttention], stages)  # the caller checked that each has the switch
    kept = [b.keep_attention for b in blocks]
    try:
        for b in blocks:
            b.keep_attention = True
        model(images)
        return [cast(torch.Tensor, b.last_attention) for b in blocks]  # set by the pass
    finally:
        for b, k in zip(blocks, kept):
            b.keep_attention = k
            b.last_attention = None


def _hooked_attention(model: Classifier, images: torch.Tensor, blocks: list[nn.Module]) -> list[torch.Tensor]:
    """Each block's attention ``(N, heads, T, T)`` read through hooks: torchvision's ``nn.MultiheadAttention``
    (asked for its per-head weights) or timm's ``Attention`` (its unfused path, the softmax caught at ``attn_drop``)."""
    found: list[torch.Tensor | None] = [None] * len(blocks)
    handles, unfused = [], []
    for i, block in enumerate(blocks):
        mha = next((m for m in block.modules() if isinstance(m, nn.MultiheadAttention)), None)
        timm_attn: Any = next(
            (m for m in block.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")), None
        )
        if mha is not None:
            handles.append(mha.register_forward_pre_hook(_ask_weights, with_kwargs=True))
            handles.append(mha.register_forward_hook(lambda _m, _i, out, i=i: found.__setitem__(i, out[1])))
        elif timm_attn is not None:
            unfused.append((timm_attn, timm_attn.fused_attn))
            timm_attn.fused_attn = False
            keep = timm_attn.attn_drop.register_forward_hook(lambda _m, _i, out, i=i: found.__setitem__(i, out))
            handles.append(keep)
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
        for m, fused in unfused:
            m.fused_attn = fused
    if any(a is None or a.ndim != 4 for a in found):
        from patchscope.errors import PatchscopeError

        raise PatchscopeError("attention rollout could not read the attention of every transformer block of this model")
    return cast(list[torch.Tensor], found)  # none is None: checked above


def _ask_weights(
    _m: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[tuple[object, ...], dict[str, object]]:
    return args, {**kwargs, "need_weights": True, "average_attn_weights": False}


def heatmaps(
    model: Classifier,
    images: torch.Tensor,
    method: Method = "auto",
    target: torch.Tensor | None = None,
    layer: str | None = None,
) -> torch.Tensor:
    """Heatmaps ``(N, H, W)`` in [0, 1]: ``gradcam`` (``auto``) or ``rollout`` (ViTs only)."""
    if method == "rollout":
        return attention_rollout(model, images)
    if method not in ("auto", "gradcam"):
        from patchscope.errors import PatchscopeError

        raise PatchscopeError(f"heatmap method {method!r}: use auto, gradcam or rollout")
    return grad_cam(model, images, target, layer)


@dataclass(frozen=True)
class TopK:
    """The ``k`` most probable classes per image: ``probs`` and ``classes``, both ``(N, k)``, descending."""

    probs: torch.Tensor
    classes: torch.Tensor


@torch.no_grad()
def top_probabilities(model: nn.Module, images: torch.Tensor, k: int = 5) -> TopK:
    """Softmax top-``k`` of ``model`` on ``images`` (N, 3, H, W).

    >>> from patchscope.models.archs import cnn
    >>> m = Classifier(cnn(num_classes=7, width=4, hidden=8), list("abcdefg")).eval()
    >>> top_probabilities(m, torch.rand(2, 3, 32, 32)).probs.shape
    torch.Size([2, 5])
    """
    probs = model(images).softmax(1)
    values, index = probs.topk(min(k, probs.shape[1]), dim=1)
    return TopK(values, index)


@dataclass(frozen=True)
class Attention:
    """Heatmaps ``(N, H, W)`` for clean and patched images plus their top-k before and after."""

    clean: torch.Tensor
    patched: torch.Tensor
    before: TopK
    after: TopK

    def mass_inside(self, footprint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Share of each heatmap's mass inside the ``(H, W)`` footprint: (clean (N,), patched (N,))."""
        fp = footprint.to(self.clean.dtype)

        def share(m: torch.Tensor) -> torch.Tensor:
            total = m.sum((1, 2))
            return torch.where(
                total > 0, (m * fp).sum((1, 2)) / total.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(total)
            )

        return share(self.clean), share(self.patched)


def explain_attention(
    model: Classifier,
    clean: torch.Tensor,
    patched: torch.Tensor,
    method: Method = "auto",
    k: int = 5,
    layer: str | None = None,
) -> Attention:
    """Heatmaps of ``clean`` and ``patched`` (each for its own predicted class) and top-``k`` of both.

    >>> from patchscope.models.archs import cnn
    >>> m = Classifier(cnn(num_classes=7, width=4, hidden=8), list("abcdefg")).eval()
    >>> x = torch.rand(2, 3, 32, 32)
    >>> a = explain_attention(m, x, x.clone())
    >>> a.patched.shape, a.after.classes.shape
    (torch.Size([2, 32, 32]), torch.Size([2, 5]))
    """
    before, after = top_probabilities(model, clean, k), top_probabilities(model, patched, k)
    return Attention(
        heatmaps(model, clean, method, before.classes[:, 0], layer),
        heatmaps(model, patched, method, after.classes[:, 0], layer),
        before,
        after,
    )
