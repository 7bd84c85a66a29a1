"""How the patch's signal grows layer by layer, and how abnormal the patched activations are.

Forward hooks record every stage of ``model.stages()`` on a clean pass and on a patched pass
(same batches, same shapes). Per layer, with ``a_c`` / ``a_p`` the clean / patched activation,
``delta = a_p - a_c``, a *position* one spatial cell (CNN ``(h, w)``) or one image token (ViT; the
class token has no place in the image and is left out of every spatial sum), the energy of a
position the sum of squares over its channels, and ``F`` the patch footprint on the layer's grid:

* ``adversarial_signal = sqrt(sum_{p in F} ||delta_p||^2)``: the L2 norm of the change on the footprint.
* ``adversarial_share = sum_p ||delta_p||^2 / sum_p ||a_p,p||^2``: the change's energy over the
  patched activation's energy, all positions (0 without a patch; above 1 when the patch mostly
  removes activation).
* ``natural_ratio = sum_{p not in F} ||a_p,p||^2 / sum_{p not in F} ||a_c,p||^2``: the energy of the
  natural features off the patch, patched over clean (below 1: suppressed; above 1: amplified).
* ``max_z``: the largest absolute activation of each patched image, as a z-score against the
  per-image largest absolute activations of the clean images (mean, unbiased std).

Aggregates over images are ratios of summed energies (share, natural ratio) and means (signal,
max_z). An image whose patched input equals its clean input bit for bit has ``delta = 0`` exactly.

The footprint is the pixels an all-ones patch covers when pasted (on-object, at the patch's
``location``, the centre when it has none) on zeros; a layer's grid takes the cells it touches:
adaptive max-pooling to ``(h, w)`` (``stride x stride`` cells), optionally dilated by ``dilation``
cells for the receptive field. For tokens, a token is in when its ``patch x patch`` cell overlaps.

>>> import torch
>>> from patchscope.models import Classifier
>>> from patchscope.models.archs import cnn
>>> m = Classifier(cnn(num_classes=3, width=4, hidden=8), ["a", "b", "c"]).eval()
>>> x = torch.rand(4, 3, 32, 32)
>>> fp = torch.zeros(32, 32, dtype=torch.bool); fp[8:15, 8:15] = True
>>> traces = trace_layers(m, x, x.clone(), fp)
>>> [t.name for t in traces], float(traces[0].adversarial_signal().abs().sum())
(['stage0', 'stage1', 'stage2'], 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from patchscope.attacks.eot import ViewParams, fixed_view, paste
from patchscope.attacks.patch import Patch
from patchscope.models.wrapper import Classifier


def patch_view(patch: Patch, n: int, device: str | torch.device = "cpu") -> ViewParams:
    """``n`` identical on-object views at the patch's location (its centre when it has none)."""
    return fixed_view(n, patch.image_size, patch.side, "on-object", patch.location).to(device)


def apply_patch(images: torch.Tensor, patch: Patch) -> torch.Tensor:
    """``images`` (N, 3, H, W) with the patch pasted on-object at its location, no camera effects."""
    dev = images.device
    return paste(images, patch.pixels.to(dev), patch.mask.to(dev), patch_view(patch, len(images), dev))


def patch_footprint(patch: Patch, device: str | torch.device = "cpu") -> torch.Tensor:
    """The ``(H, W)`` bool footprint: where an all-ones patch lands when pasted on zeros.

    >>> p = Patch(torch.rand(3, 4, 4), torch.ones(4, 4), "on-object", (2, 5), 16)
    >>> fp = patch_footprint(p)
    >>> fp.shape, int(fp.sum()), bool(fp[2, 5]), bool(fp[6, 5])
    (torch.Size([16, 16]), 16, True, False)
    """
    zeros = torch.zeros(1, 3, patch.image_size, patch.image_size, device=device)
    ones = torch.ones(3, patch.side, patch.side, device=device)
    return paste(zeros, ones, patch.mask.to(device), patch_view(patch, 1, device))[0, 0] > 0


def grid_footprint(footprint: torch.Tensor, grid: tuple[int, int], dilation: int = 0) -> torch.Tensor:
    """The ``(h, w)`` bool cells of a layer grid that the ``(H, W)`` footprint touches.

    Adaptive max-pooling: with ``H = stride * h`` a cell is in when any of its ``stride x stride``
    pixels is; ``dilation`` then grows the region by that many cells (receptive-field margin).

    >>> fp = torch.zeros(32, 32, dtype=torch.bool); fp[5:12, 9:16] = True
    >>> grid_footprint(fp, (4, 4)).nonzero().tolist()
    [[0, 1], [1, 1]]
    """
    cells = F.adaptive_max_pool2d(footprint.float()[None, None], grid)
    if dilation > 0:
        cells = F.max_pool2d(cells, 2 * dilation + 1, stride=1, padding=dilation)
    return cells[0, 0] > 0


def token_footprint(footprint: torch.Tensor, grid: int) -> torch.Tensor:
    """``(1 + grid*grid,)`` bool over ViT tokens: the class token (index 0) is never in; image token
    ``1 + r*grid + c`` is in when its cell of the ``(H, W)`` footprint overlaps it.

    >>> fp = torch.zeros(32, 32, dtype=torch.bool); fp[5:12, 9:16] = True
    >>> token_footprint(fp, 8).nonzero().flatten().tolist()
    [11, 12, 19, 20]
    """
    cells = grid_footprint(footprint, (grid, grid)).flatten()
    return torch.cat([cells.new_zeros(1), cells])


def _spatial_energy(act: torch.Tensor) -> torch.Tensor | None:
    """Per-position energy ``(N, P)``: CNN ``(N, C, h, w)`` -> h*w cells; tokens ``(N, T, D)`` -> T-1."""
    if act.ndim == 4:
        return act.pow(2).sum(1).flatten(1)
    if act.ndim == 3 and math.isqrt(act.shape[1] - 1) ** 2 == act.shape[1] - 1:
        return act[:, 1:].pow(2).sum(-1)
    return None


def layer_grid(act_shape: torch.Size | tuple[int, ...]) -> tuple[int, int] | None:
    """The spatial grid ``(h, w)`` of an activation shape, or None when it has none."""
    if len(act_shape) == 4:
        return int(act_shape[2]), int(act_shape[3])
    if len(act_shape) == 3 and math.isqrt(act_shape[1] - 1) ** 2 == act_shape[1] - 1:
        g = math.isqrt(act_shape[1] - 1)
        return g, g
    return None


@torch.no_grad()
def capture(model: Classifier, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of every stage for one batched forward pass: ``{name: activation}``.

    >>> from patchscope.models.archs import cnn
    >>> m = Classifier(cnn(num_classes=3, width=4, hidden=8), ["a", "b", "c"]).eval()
    >>> {k: tuple(v.shape) for k, v in capture(m, torch.rand(2, 3, 32, 32)).items()}
    {'stage0': (2, 4, 16, 16), 'stage1': (2, 8, 8, 8), 'stage2': (2, 16, 4, 4)}
    """
    acts: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: acts.__setitem__(name, out.detach().clone()))
        for name, m in model.stages()
    ]
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
    return acts


@dataclass(frozen=True)
class LayerTrace:
    """Per-image sums for one layer; every tensor but ``footprint`` is ``(N,)`` on the device.

    ``footprint`` is the ``(h, w)`` bool footprint on the layer's grid.
    """

    name: str
    grid: tuple[int, int]
    footprint: torch.Tensor
    delta_inside: torch.Tensor  # sum over F of ||delta||^2
    delta_all: torch.Tensor  # sum over positions of ||delta||^2
    patched_all: torch.Tensor  # sum over positions of ||a_p||^2
    clean_outside: torch.Tensor  # sum outside F of ||a_c||^2
    patched_outside: torch.Tensor  # sum outside F of ||a_p||^2
    clean_max: torch.Tensor  # largest |a_c|
    patched_max: torch.Tensor  # largest |a_p|

    def adversarial_signal(self) -> torch.Tensor:
        """``(N,)`` L2 norm of ``delta`` over the footprint."""
        return self.delta_inside.sqrt()

    def adversarial_share(self) -> torch.Tensor:
        """``(N,)`` energy of ``delta`` over the energy of the patched activation."""
        return _ratio(self.delta_all, self.patched_all, 0.0)

    def natural_ratio(self) -> torch.Tensor:
        """``(N,)`` energy off the footprint, patched over clean (1 where both are 0)."""
        return _ratio(self.patched_outside, self.clean_outside, 1.0)

    def max_z(self, reference: LayerTrace | None = None) -> torch.Tensor:
        """``(N,)`` z-scores of ``patched_max`` against the clean maxima of ``reference`` (default: self)."""
        ref = reference if reference is not None else self
        return max_z(ref.clean_max, self.patched_max)

    def summary(self, reference: LayerTrace | None = None) -> dict[str, object]:
        """JSON-ready aggregate: share and natural ratio of summed energies; mean signal and max_z."""
        return {
            "name": self.name,
            "grid": list(self.grid),
            "footprint_cells": int(self.footprint.sum()),
            "adversarial_signal": _finite(self.adversarial_signal().mean()),
            "adversarial_share": _finite(_ratio(self.delta_all.sum(), self.patched_all.sum(), 0.0)),
            "natural_ratio": _finite(_ratio(self.patched_outside.sum(), self.clean_outside.sum(), 1.0)),
            "max_z": _finite(self.max_z(reference).mean()),
        }


def _ratio(num: torch.Tensor, den: torch.Tensor, both_zero: float) -> torch.Tensor:
    """``num / den``; ``both_zero`` where both are 0, +inf where only ``den`` is."""
    out = num / den.clamp_min(torch.finfo(den.dtype).tiny)
    out = torch.where(den > 0, out, torch.full_like(out, math.inf))
    return torch.where((num == 0) & (den == 0), torch.full_like(out, both_zero), out)


def _finite(t: torch.Tensor) -> float | None:
    v = float(t)
    return v if math.isfinite(v) else None


def max_z(clean_max: torch.Tensor, patched_max: torch.Tensor) -> torch.Tensor:
    """``(patched_max - mean(clean_max)) / std(clean_max)`` (unbiased std; NaN with under 2 clean images).

    >>> max_z(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 2.0]))
    tensor([2., 0.])
    """
    if clean_max.numel() < 2:
        return torch.full_like(patched_max, math.nan)
    mean, std = clean_max.mean(), clean_max.std()
    return (patched_max - mean) / std.clamp_min(torch.finfo(std.dtype).eps * mean.abs().clamp_min(1.0))


@torch.no_grad()
def trace_layers(
    model: Classifier,
    clean: torch.Tensor,
    patched: torch.Tensor,
    footprint: torch.Tensor,
    batch_size: int = 256,
    dilation: int = 0,
) -> list[LayerTrace]:
    """One :class:`LayerTrace` per stage with a spatial grid, for ``clean`` and ``patched`` (N, 3, H, W).

    ``footprint`` (H, W) bool, from :func:`patch_footprint`. Batches of ``batch_size`` images; the
    clean and the patched pass see the same batch shapes. Stages with no spatial grid are skipped.
    """
    if clean.shape != patched.shape:
        from patchscope.errors import PatchscopeError

        raise PatchscopeError(f"clean {tuple(clean.shape)} and patched {tuple(patched.shape)} images differ in shape")
    parts: dict[str, list[torch.Tensor]] = {}
    grids: dict[str, tuple[tuple[int, int], torch.Tensor]] = {}
    fp_dev = footprint.to(clean.device)
    for start in range(0, len(clean), batch_size):
        xc, xp = clean[start : start + batch_size], patched[start : start + batch_size]
        same = (xc == xp).flatten(1).all(1)  # (B,) inputs identical: delta is 0 by definition
        ac, ap = capture(model, xc), capture(model, xp)
        for name in ac:
            grid = layer_grid(ac[name].shape)
            if grid is None:
                continue
            if name not in grids:
                grids[name] = (grid, grid_footprint(fp_dev, grid))
            inside = grids[name][1].flatten().to(ac[name].dtype)  # (P,)
            delta = torch.where(
                same.view(-1, *[1] * (ac[name].ndim - 1)), torch.zeros_like(ap[name]), ap[name] - ac[name]
            )
            ed, ec, ep = _spatial_energy(delta), _spatial_energy(ac[name]), _spatial_energy(ap[name])
            assert ed is not None and ec is not None and ep is not None
            row = torch.stack(
                [
                    (ed * inside).sum(1),
                    ed.sum(1),
                    ep.sum(1),
                    (ec * (1 - inside)).sum(1),
                    (ep * (1 - inside)).sum(1),
                    ac[name].abs().flatten(1).amax(1),
                    ap[name].abs().flatten(1).amax(1),
                ],
                1,
            )
            parts.setdefault(name, []).append(row)
    traces = []
    for name, rows in parts.items():
        s = torch.cat(rows)
        traces.append(LayerTrace(name, grids[name][0], grids[name][1], *s.unbind(1)))
    return traces
