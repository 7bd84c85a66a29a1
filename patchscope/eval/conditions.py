"""Viewing conditions: the default grid the headline numbers average over, and the wider sweeps."""

from __future__ import annotations

from typing import Any

import torch

from patchscope.attacks.eot import NEUTRAL
from patchscope.errors import PatchscopeError

Condition = dict[str, Any]  # factor -> value (floats); a sweep's points also name their "factor"

#: the ranges of the default grid: rotation, yaw and pitch up to +-15 deg, distance (scale) 0.85-1.0,
#: brightness 0.7-1.3, mild blur
GRID_RANGES: dict[str, tuple[float, float]] = {
    "rotation": (-15.0, 15.0),
    "yaw": (-15.0, 15.0),
    "pitch": (-15.0, 15.0),
    "scale": (0.85, 1.0),
    "brightness": (0.7, 1.3),
    "blur": (0.0, 0.6),
}


def stratified_grid(
    n: int = 32, seed: int = 0, ranges: dict[str, tuple[float, float]] = GRID_RANGES
) -> list[Condition]:
    """``n`` conditions spread over ``ranges`` by Latin-hypercube sampling (each factor's range cut
    into ``n`` strata, one draw per stratum, strata shuffled per factor), plus the no-change view first."""
    g = torch.Generator().manual_seed(seed)
    cols = {}
    for k, (lo, hi) in ranges.items():
        strata = (torch.randperm(n, generator=g) + torch.rand(n, generator=g)) / n
        cols[k] = (lo + strata * (hi - lo)).tolist()
    grid = [{k: round(cols[k][i], 3) for k in ranges} for i in range(n)]
    return [{k: NEUTRAL[k] for k in ranges}, *grid]


#: the default viewing grid: 33 conditions (no change, then 32 stratified draws over GRID_RANGES)
DEFAULT_GRID: list[Condition] = stratified_grid()

#: one factor at a time, the others at no change: the curves of the report
SWEEPS: dict[str, list[float]] = {
    "yaw": [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
    "rotation": [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
    "scale": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],
    "brightness": [0.5, 0.7, 0.9, 1.1, 1.3, 1.5],
    "blur": [0.0, 0.5, 1.0, 1.5, 2.0],
    "noise": [0.0, 0.02, 0.05, 0.1],
}


def sweep_conditions() -> list[Condition]:
    """Every point of :data:`SWEEPS` as a condition, tagged with its factor."""
    return [{"factor": factor, factor: v} for factor, values in SWEEPS.items() for v in values]


def condition_label(c: dict[str, Any]) -> str:
    """A short human label: ``rotation=15 yaw=-15 ...`` (only factors away from no change)."""
    parts = [f"{k}={v:g}" for k, v in c.items() if k in NEUTRAL and v != NEUTRAL[k]]
    return " ".join(parts) or "no change"


#: the named condition sets a measurement can take
CONDITION_SETS = ("default", "none", "sweep")


def condition_grid(name: str) -> list[Condition]:
    """The named set of viewing conditions: ``default`` (:data:`DEFAULT_GRID`), ``none`` (one, no change) or ``sweep``.

    >>> len(condition_grid("none")), len(condition_grid("default"))
    (1, 33)
    """
    if name == "default":
        return DEFAULT_GRID
    if name == "none":
        return [{}]
    if name == "sweep":
        return sweep_conditions()
    raise PatchscopeError(f"conditions {name!r}: use {', '.join(CONDITION_SETS)}", params=("conditions",))
