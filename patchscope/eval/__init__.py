"""Evaluation on top of every other layer: patch success over viewing conditions, transfer, accuracy."""

from patchscope.eval.conditions import DEFAULT_GRID, SWEEPS, condition_label, sweep_conditions
from patchscope.eval.patch_metrics import condition_views, patch_success, transfer_matrix

__all__ = ["DEFAULT_GRID", "SWEEPS", "condition_label", "condition_views", "patch_success", "sweep_conditions", "transfer_matrix"]
