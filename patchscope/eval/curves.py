"""Attack strength against patch area: one attack per size, success measured on held-out images, A90."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patchscope.attacks import AttackConfig, AttackInterrupted, attack_settings, create_attack
from patchscope.data import ImageSet
from patchscope.distributed import is_main
from patchscope.errors import PatchscopeError
from patchscope.eval.conditions import DEFAULT_GRID, Condition
from patchscope.eval.figures import a90, area_figure
from patchscope.eval.patch_metrics import patch_success
from patchscope.io import write_json
from patchscope.models.checkpoint import weights_fingerprint
from patchscope.validate import check_fraction, check_same_settings


@dataclass(frozen=True)
class CurveCheckpoints:
    """Where a curve keeps its progress: each finished size's row (``PLACEMENT-SIZE.json``) and the running attack's
    checkpoint (``PLACEMENT-SIZE.pt``); with ``resume``, finished sizes are read back and the attack continues.

    Args:
        folder: the checkpoint folder.
        resume: continue from what ``folder`` holds (refused if a setting changed).
        identity: what else must match to resume (the model, the images).
    """

    folder: Path
    resume: bool = False
    identity: Mapping[str, Any] = field(default_factory=dict)

    def stem(self, config: AttackConfig) -> Path:
        return self.folder / f"{config.placement}-{config.size:g}"

    def finished(self, config: AttackConfig) -> dict[str, Any] | None:
        """The row of a size finished before, when resuming; None otherwise."""
        path = Path(f"{self.stem(config)}.json")
        if not (self.resume and path.exists()):
            return None
        try:
            saved = json.loads(path.read_text())
            settings, row = saved["settings"], saved["row"]
        except (OSError, ValueError, KeyError, TypeError):
            raise PatchscopeError(f"resume: {path} is not a curve checkpoint", params=("resume",)) from None
        check_same_settings(settings, attack_settings(config, dict(self.identity)))
        return dict(row)

    def keep(self, config: AttackConfig, row: dict[str, Any]) -> None:
        if is_main():
            settings = attack_settings(config, dict(self.identity))
            write_json(Path(f"{self.stem(config)}.json"), {"settings": settings, "row": row})


def area_curve(
    model: nn.Module,
    make: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    sizes: Sequence[float],
    config: AttackConfig,
    conditions: Sequence[Condition] = DEFAULT_GRID,
    device: str | torch.device = "cpu",
    progress: bool = True,
    checkpoints: CurveCheckpoints | None = None,
) -> dict[str, Any]:
    """For each size: optimise a patch on ``make`` images, measure it on ``test`` images over ``conditions``.

    Returns ``points`` [(area, targeted success)], per-size details and ``a90`` (smallest area reaching
    90%, interpolated between measured sizes, or None). With ``checkpoints``, each size's row is kept when it is
    done and an interrupted attack keeps its checkpoint (:class:`CurveCheckpoints`).
    """
    if not sizes:
        raise PatchscopeError("sizes must hold at least one patch area", params=("sizes",))
    for size in sizes:
        check_fraction("sizes", size)
    rows: list[dict[str, Any]] = []
    for size in sorted(sizes):
        cfg = replace(config, size=size)
        try:
            row = checkpoints.finished(cfg) if checkpoints is not None else None
            rows.append(row or _one_size(model, make, test, cfg, conditions, device, progress, checkpoints))
        except AttackInterrupted as e:
            done = f"{len(rows)} of {len(sizes)} {config.placement} sizes done"
            raise AttackInterrupted(f"{config.placement} {size:g}: {e}; {done}", e.signum) from None
    points = [(r["area"], r["success"]) for r in rows]
    return {"placement": config.placement, "points": points, "rows": rows, "a90": a90(points)}


def _one_size(
    model: nn.Module,
    make: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    cfg: AttackConfig,
    conditions: Sequence[Condition],
    device: str | torch.device,
    progress: bool,
    checkpoints: CurveCheckpoints | None,
) -> dict[str, Any]:
    """One size's patch, made and measured: the curve's row (kept in ``checkpoints`` when given)."""
    options: dict[str, Any] = {"progress": progress}
    if checkpoints is not None:
        pt = Path(f"{checkpoints.stem(cfg)}.pt")
        options |= {"checkpoint": pt, "resume": checkpoints.resume, "identity": dict(checkpoints.identity)}
    patch = create_attack("universal", model, cfg, str(device), **options)(*make)
    m = patch_success(model, test[0], test[1], patch, cfg.target, conditions, device=device)
    row = {
        "size": cfg.size,
        "area": patch.area_fraction,
        "side": patch.side,
        "location": patch.location,
        "success": m.success(cfg.target is not None),
        "target_confidence": m.target_confidence,
        "clean_accuracy": m.clean_accuracy,
    }
    if checkpoints is not None:
        checkpoints.keep(cfg, row)
    return row


@dataclass(frozen=True)
class AreaCurves:
    """What :func:`area_curves` measured: ``curves[placement]`` as :func:`area_curve` gives it (``points``, ``rows``,
    ``a90``); ``label`` names the model in the figure. :meth:`save` writes them.

    Attributes:
        label: the model's name (the figure's legend).
        curves: one curve per placement.
        checkpoints: the folder that kept the progress while computing (removed by :meth:`save`), or None.
    """

    label: str
    curves: dict[str, dict[str, Any]]
    checkpoints: Path | None = field(default=None, compare=False)

    def a90(self, placement: str) -> float | None:
        """The smallest area reaching 90% for ``placement`` (None if not reached)."""
        return self.curves[placement]["a90"]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready: ``{placement: curve}``."""
        return dict(self.curves)

    def save(self, out: Path, info: Mapping[str, Any] | None = None) -> list[Path]:
        """Write ``out/curve.json`` (``info`` first, then the curves) and ``out/area.png``; then remove the progress
        checkpoints the curves were computed with. Under ``torch.distributed`` only rank 0 writes.

        Returns:
            The files written (none on the other ranks).
        """
        if not is_main():
            return []
        area_figure({f"{self.label} {p}": c["points"] for p, c in self.curves.items()}, out / "area.png")
        write_json(out / "curve.json", {**(info or {}), **self.curves})
        if self.checkpoints is not None:
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        return [out / "curve.json", out / "area.png"]


def area_curves(
    model: nn.Module,
    make: ImageSet,
    test: ImageSet,
    sizes: Sequence[float],
    placements: Sequence[str],
    config: AttackConfig,
    label: str,
    device: str | torch.device = "cpu",
    checkpoints: Path | None = None,
    resume: bool = False,
) -> AreaCurves:
    """:func:`area_curve` for each placement; nothing but progress is written (:meth:`AreaCurves.save` writes).

    With ``checkpoints``, progress is kept there while computing (each finished size, the running attack's
    checkpoint; :class:`CurveCheckpoints`), because an interrupted curve resumes from it: ``resume`` continues from
    what the folder holds. It stays until :meth:`AreaCurves.save`; a failure (not an interrupt) of a fresh run
    removes it.

    Args:
        model: the attacked classifier, on ``device``.
        make: the images the patches are made on.
        test: the images they are measured on.
        sizes: patch areas.
        placements: ``on-object`` and/or ``sticker``.
        config: the attack's other settings (its size and placement are replaced).
        label: the model's name (figure legend; a resumed run must have the same).
        device: where to run.
        checkpoints: the folder for progress (e.g. ``OUT/checkpoints``); None: keep none.
        resume: continue from ``checkpoints`` (the same settings, model and images only).

    Returns:
        An :class:`AreaCurves`.
    """
    identity = {"model": label, "images": make.data_hash(), "measured_on": test.data_hash()}
    identity["weights"] = weights_fingerprint(model)
    ckpt = CurveCheckpoints(checkpoints, resume, identity) if checkpoints is not None else None
    curves, fresh = {}, not (resume and checkpoints is not None and checkpoints.exists())
    try:
        for placement in placements:
            curves[placement] = area_curve(
                model,
                (make.float_images(), make.labels),
                (test.float_images(), test.labels),
                sizes,
                replace(config, placement=placement),
                device=device,
                checkpoints=ckpt,
            )
    except Exception:
        if fresh and checkpoints is not None and is_main():
            shutil.rmtree(checkpoints, ignore_errors=True)
        raise
    return AreaCurves(label, curves, checkpoints)
