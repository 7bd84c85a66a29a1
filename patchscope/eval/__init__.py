"""Evaluation: patch success over viewing conditions, transfer, success-against-area curves and their figures.

Submodules load on first use, so `patchscope runs` starts without importing torch. Every measurement returns a typed
result (``patch_success`` -> :class:`PatchSuccess`, ``measure_patch`` -> :class:`PatchMeasurement`,
``transfer_matrix`` -> :class:`TransferMatrix`, ``area_curves`` -> :class:`AreaCurves`, ``compare_lighting`` ->
:class:`LightingComparison`).
"""

from __future__ import annotations

from patchscope import lazy_exports

_EXPORTS = {
    "DEFAULT_GRID": "conditions",
    "SWEEPS": "conditions",
    "condition_label": "conditions",
    "sweep_conditions": "conditions",
    "PatchMeasurement": "patch_metrics",
    "PatchSuccess": "patch_metrics",
    "TransferMatrix": "patch_metrics",
    "condition_views": "patch_metrics",
    "measure_patch": "patch_metrics",
    "patch_success": "patch_metrics",
    "transfer_matrix": "patch_metrics",
    "LightingComparison": "patch_metrics",
    "compare_lighting": "patch_metrics",
    "LightingReference": "lighting",
    "SignLighting": "lighting",
    "estimate_lighting": "lighting",
    "lighting_reference": "lighting",
    "AreaCurves": "curves",
    "CurveCheckpoints": "curves",
    "area_curves": "curves",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
