"""Attack objectives (per-row losses to minimise) and printability terms, all batched."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from patchscope.recipe import LOSSES  # the objectives :func:`attack_loss` knows

__all__ = ["LOSSES", "attack_loss", "non_printability", "printable_colours", "total_variation"]


def attack_loss(
    logits: torch.Tensor, labels: torch.Tensor, target: int | None, kind: str = "margin", kappa: float = 5.0
) -> torch.Tensor:
    """Per-row loss (N,) to *minimise*. Targeted when ``target`` is set, else push away from ``labels``.

    ``margin``: the logit gap to beat (capped at ``-kappa`` once won, so EOT spreads effort);
    ``ce``: cross-entropy to the target, or negative cross-entropy to the label;
    ``sigmoid``: the sigmoid of the uncapped gap, a smooth count of the rows not yet won. Bounded on both
    sides, it spends little effort on views already won or out of reach, and most on those near the
    boundary, a smooth stand-in for the success rate that a universal patch is graded by (a scale-free
    optimiser like Adam still moves on its small gradients far from the boundary).

    >>> z = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> attack_loss(z, torch.tensor([0, 0]), target=1, kappa=1.0).tolist()
    [2.0, -1.0]
    >>> attack_loss(z, torch.tensor([0, 0]), target=1, kind="sigmoid") > 0.5  # still to win, won
    tensor([ True, False])
    """
    if kind == "ce":
        if target is not None:
            return F.cross_entropy(logits, torch.full_like(labels, target), reduction="none")
        return -F.cross_entropy(logits, labels, reduction="none")
    goal = torch.full_like(labels, target) if target is not None else labels
    goal_logit = logits.gather(1, goal[:, None]).squeeze(1)
    others = logits.scatter(1, goal[:, None], float("-inf")).amax(1)
    gap = others - goal_logit if target is not None else goal_logit - others
    return torch.sigmoid(gap) if kind == "sigmoid" else gap.clamp_min(-kappa)


def total_variation(pixels: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per patch: (..., 3, s, s) -> (...)."""
    dy = (pixels[..., 1:, :] - pixels[..., :-1, :]).abs().mean((-3, -2, -1))
    dx = (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().mean((-3, -2, -1))
    return dx + dy


def printable_colours(levels: tuple[float, ...] = (0.1, 0.5, 0.9)) -> torch.Tensor:
    """A stand-in printer gamut: every RGB combination of ``levels`` (27 colours by default), (K, 3)."""
    grid = torch.tensor(levels)
    return torch.cartesian_prod(grid, grid, grid)


def non_printability(pixels: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Non-printability score (Sharif et al. 2016): mean over pixels of the distance to the nearest colour."""
    flat = pixels.movedim(-3, -1).reshape(*pixels.shape[:-3], -1, 3)
    return torch.cdist(flat, colours.to(flat)).amin(-1).mean(-1)
