"""Attack strength against patch area: one attack per size, success measured on held-out images, A90."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patchscope.attacks import AttackConfig, create_attack
from patchscope.data import ImageSet
from patchscope.distributed import is_main
from patchscope.errors import PatchscopeError
from patchscope.eval.conditions import DEFAULT_GRID, Condition
from patchscope.eval.figures import a90, area_figure
from patchscope.eval.patch_metrics import patch_success
from patchscope.io import write_json
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
        raise PatchscopeError("sizes must hold at least one patch area", params=("sizes",))
    for size in sizes:
        check_fraction("sizes", size)
    rows = []
    for size in sorted(sizes):
        patch = create_attack("universal", model, replace(config, size=size), str(device), progress=progress)(*make)
        m = patch_success(model, test[0], test[1], patch, config.target, conditions, device=device)
        key = "targeted_success" if config.target is not None else "untargeted_success"
        rows.append(
            {
                "size": size,
                "area": patch.area_fraction,
                "side": patch.side,
                "location": patch.location,
                "success": m[key],
                "target_confidence": m["target_confidence"],
                "clean_accuracy": m["clean_accuracy"],
            }
        )
    points = [(r["area"], r["success"]) for r in rows]
    return {"placement": config.placement, "points": points, "rows": rows, "a90": a90(points)}


def area_curves(
    model: nn.Module,
    make: ImageSet,
    test: ImageSet,
    sizes: Sequence[float],
    placements: Sequence[str],
    config: AttackConfig,
    out: Path,
    label: str,
    info: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, Any]]:
    """:func:`area_curve` for each placement, written to ``out/curve.json`` (after ``info``) and ``out/area.png``.

    Args:
        model: the attacked classifier, on ``device``.
        make: the images the patches are made on.
        test: the images they are measured on.
        sizes: patch areas.
        placements: ``on-object`` and/or ``sticker``.
        config: the attack's other settings (its size and placement are replaced).
        out: the folder for the curve's JSON and figure (under ``torch.distributed``, rank 0 writes them).
        label: the model's name in the figure's legend.
        info: facts written before the curves in ``curve.json`` (model, data, ...).
        device: where to run.

    Returns:
        ``{placement: curve}`` as :func:`area_curve` gives it.
    """
    curves = {}
    for placement in placements:
        cfg = replace(config, placement=placement)
        curves[placement] = area_curve(
            model, (make.float_images(), make.labels), (test.float_images(), test.labels), sizes, cfg, device=device
        )
    if is_main():  # under torch.distributed every rank has the curves; one writes them
        area_figure({f"{label} {p}": c["points"] for p, c in curves.items()}, out / "area.png")
        write_json(out / "curve.json", {**(info or {}), **curves})
    return curves
