"""Activation clipping: clamp the early stages' outputs to per-channel bounds seen on clean data.

A patch wins by driving a few early features far beyond their natural range; clamping each channel
to the range measured on clean images takes most of that lever away while clean inputs, inside the
bounds, pass unchanged. :func:`fit_bounds` measures, :class:`ActivationClipping` clamps with forward
hooks on ``model.stages()`` that exist only while the defended model runs.

>>> import torch
>>> from patchscope.models import create_model
>>> model = create_model("gtsrb-cnn")
>>> defended = ActivationClipping.fit(model, torch.rand(16, 3, 32, 32), stages=2)
>>> sorted(defended.bounds), defended(torch.rand(3, 3, 32, 32)).shape
(['stage0', 'stage1'], torch.Size([3, 43]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from patchscope.defenses.registry import register_defense
from patchscope.errors import PatchscopeError
from patchscope.validate import check_batch, check_int, check_range


def _stage_modules(model: nn.Module, stages: int | Sequence[str]) -> dict[str, nn.Module]:
    stages_of = getattr(model, "stages", None)
    if stages_of is None:
        raise PatchscopeError("activation clipping needs a Classifier with stages()")
    named: dict[str, nn.Module] = dict(stages_of())
    if isinstance(stages, int):
        stages = check_int("stages", stages, 1)
        return dict(list(named.items())[:stages])
    missing = [s for s in stages if s not in named]
    if missing:
        raise PatchscopeError(f"unknown stages {', '.join(missing)}: the model has {', '.join(named)}")
    return {s: named[s] for s in stages}


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) CNN maps or (N, T, D) tokens -> (N, C) per-image channel maxima and minima stacked (2, N, C)."""
    if t.ndim == 4:
        return torch.stack([t.amax((2, 3)), t.amin((2, 3))])
    if t.ndim == 3:
        return torch.stack([t.amax(1), t.amin(1)])
    raise PatchscopeError(f"cannot clip a stage output of shape {tuple(t.shape)}")


def _view(bound: torch.Tensor, ndim: int) -> torch.Tensor:
    return bound.view(1, -1, 1, 1) if ndim == 4 else bound.view(1, 1, -1)


@torch.no_grad()
def fit_bounds(
    model: nn.Module,
    images: torch.Tensor,
    stages: int | Sequence[str] = 2,
    quantile: float = 1.0,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Per-channel ``(2, C)`` bounds (row 0 upper, row 1 lower) of each stage's output on clean ``images`` (N,3,H,W).

    Each image gives its per-channel maximum and minimum; the bound is their ``quantile`` over images
    (1.0: the largest seen). Lower quantile ``1 - quantile`` for the lower bound.

    >>> from patchscope.models import create_model
    >>> b = fit_bounds(create_model("gtsrb-cnn"), torch.rand(8, 3, 32, 32), stages=1)
    >>> b["stage0"].shape
    torch.Size([2, 24])
    """
    check_range("quantile", quantile, 0.0, 1.0, low_open=True)
    batch_size = check_batch("batch_size", batch_size)
    if len(images) == 0:
        raise PatchscopeError("fitting activation bounds needs at least one clean image")
    modules = _stage_modules(model, stages)
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=n: seen[n].append(_per_channel(out.detach())))
        for n, m in modules.items()
    ]
    try:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    finally:
        for h in hooks:
            h.remove()
    bounds = {}
    for n, parts in seen.items():
        stats = torch.cat(parts, 1).float()  # (2, N, C)
        hi = torch.quantile(stats[0], quantile, dim=0)
        lo = torch.quantile(stats[1], 1 - quantile, dim=0)
        bounds[n] = torch.stack([hi, lo])
    return bounds


class ActivationClipping(nn.Module):
    """``model`` with each named stage's output clamped per channel to ``bounds[name]`` (2, C): [upper, lower].

    The clamp is differentiable almost everywhere (zero gradient beyond a bound), so attacks
    optimise through it directly. Hooks are attached only for the duration of each forward call,
    so the wrapped model itself stays undefended.
    """

    def __init__(self, model: nn.Module, bounds: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.modules_ = _stage_modules(model, list(bounds))
        for n, b in bounds.items():
            self.register_buffer(f"bound_{n}", b.detach().clone().float())
        self.classes = tuple(getattr(model, "classes", ()))
        self.input_size = int(getattr(model, "input_size", 32))
        self.name = f"{getattr(model, 'name', 'model')}+clip"

    @property
    def bounds(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"bound_{n}") for n in self.modules_}

    @classmethod
    def fit(
        cls,
        model: nn.Module,
        images: torch.Tensor,
        stages: int | Sequence[str] = 2,
        quantile: float = 1.0,
        batch_size: int = 256,
    ) -> ActivationClipping:
        """Measure bounds on clean ``images`` with :func:`fit_bounds`, then wrap ``model``."""
        return cls(model, fit_bounds(model, images, stages, quantile, batch_size))

    @contextmanager
    def _clamped(self) -> Iterator[None]:
        def hook(name: str) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
            def clamp(mod: nn.Module, inp: object, out: torch.Tensor) -> torch.Tensor:
                b = getattr(self, f"bound_{name}").to(out.dtype)
                return torch.minimum(torch.maximum(out, _view(b[1], out.ndim)), _view(b[0], out.ndim))

            return clamp

        handles = [m.register_forward_hook(hook(n)) for n, m in self.modules_.items()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._clamped():
            return self.model(x)


@register_defense("clip")
def clip_defense(
    model: nn.Module, clean_images: torch.Tensor, stages: int = 2, quantile: float = 1.0
) -> ActivationClipping:
    """Activation clipping: the first ``stages`` stages clamped to the ``quantile`` of their range on ``clean_images``.

    Args:
        model: a classifier with ``stages()``.
        clean_images: (N,3,H,W) in [0,1], the images the bounds are measured on.
        stages: how many early stages to clip.
        quantile: bound quantile over the clean images (1.0: the largest seen).

    Returns:
        The defended model (differentiable: attacks need no BPDA).
    """
    return ActivationClipping.fit(model, clean_images, stages, quantile)
