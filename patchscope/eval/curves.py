"""Attack strength against patch area: one attack per size, success measured on held-out images, A90."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from patchscope.attacks import AttackConfig, PatchAttack
from patchscope.eval.conditions import DEFAULT_GRID, Condition
from patchscope.eval.figures import a90
from patchscope.eval.patch_metrics import patch_success
from patchscope.errors import PatchscopeError
from patchscope.validate import check_fraction


def area_curve(
    model: nn.Module,
    make: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    sizes: Sequence[float],
    config: AttackConfig,
    conditions: Sequence[Condition] = DEFAULT_GRID,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """For each size: optimise a patch on ``make`` images, measure it on ``test`` images over ``conditions``.

    Returns ``points`` [(area, targeted success)], per-size details and ``a90`` (smallest area reaching
    90%, interpolated between measured sizes, or None).
    """
    if not sizes:
        raise PatchscopeError("sizes must hold at least one patch area")
    for size in sizes:
        check_fraction("sizes", size)
    rows = []
    for size in sorted(sizes):
        patch = PatchAttack(model, replace(config, size=size), device, progress=progress)(*make)
        m = patch_success(model, test[0], test[1], patch, config.target, conditions, device=device)
        key = "targeted_success" if config.target is not None else "untargeted_success"
        rows.append({"size": size, "area": patch.area_fraction, "side": patch.side, "location": patch.location, "success": m[key], "target_confidence": m["target_confidence"], "clean_accuracy": m["clean_accuracy"]})
    points = [(r["area"], r["success"]) for r in rows]
    return {"placement": config.placement, "points": points, "rows": rows, "a90": a90(points)}
