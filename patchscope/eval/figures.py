"""Figures of the eval layer: success across viewing conditions, the transfer matrix, success against area."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from patchscope.formatting import pct
from patchscope.io import atomic_path

UNITS = {
    "yaw": "viewing angle (deg)",
    "rotation": "rotation (deg)",
    "scale": "scale (distance)",
    "brightness": "brightness",
    "blur": "blur sigma (px)",
    "noise": "noise std",
}


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def condition_curves(
    per_model: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, metric: str = "targeted_success", title: str = ""
) -> None:
    """One panel per swept factor (rows from ``patch_success(..., sweep_conditions())["conditions"]``),
    one line per model for ``metric`` and a dashed line for its clean accuracy."""
    factors = list(dict.fromkeys(c["factor"] for rows in per_model.values() for c in rows if "factor" in c))
    cols = min(3, len(factors))
    rows_n = -(-len(factors) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows_n), layout="constrained")
    axes = list(fig.subplots(rows_n, cols, squeeze=False).flat)
    for ax in axes[len(factors) :]:
        ax.set_visible(False)
    for ax, factor in zip(axes, factors):
        for name, rows in per_model.items():
            pts = [(c[factor], c[metric], c["clean_accuracy"]) for c in rows if c.get("factor") == factor]
            xs = [p[0] for p in pts]
            line = ax.plot(xs, [p[1] for p in pts], marker="o", label=f"{name}: patch")[0]
            ax.plot(
                xs,
                [p[2] for p in pts],
                linestyle="--",
                color=line.get_color(),
                alpha=0.6,
                label=f"{name}: clean accuracy",
            )
        ax.set_xlabel(UNITS.get(factor, factor))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[::cols]:
        ax.set_ylabel(metric.replace("_", " "))
    axes[len(factors) - 1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def transfer_figure(matrix: Mapping[str, Mapping[str, float]], path: Path, title: str = "targeted success") -> None:
    """Heat map: rows are patches (made on...), columns the models they are shown to."""
    rows, cols = list(matrix), list(next(iter(matrix.values())))
    values = [[matrix[r][c] for c in cols] for r in rows]
    fig = Figure(figsize=(1.6 + 1.5 * len(cols), 1.0 + 0.7 * len(rows)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(values, vmin=0, vmax=1, cmap="Reds")
    ax.set_xticks(range(len(cols)), cols, rotation=20)
    ax.set_yticks(range(len(rows)), [f"made on {r}" for r in rows])
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, pct(v), ha="center", va="center", color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    _save(fig, path)


def area_figure(curves: Mapping[str, Sequence[tuple[float, float]]], path: Path, goal: float = 0.9) -> None:
    """Success against patch area, one line per (model, placement); a dotted line at ``goal``."""
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, pts in curves.items():
        ax.plot([100 * a for a, _ in pts], [s for _, s in pts], marker="o", label=name)
    ax.axhline(goal, linestyle=":", color="grey")
    ax.set_xlabel("patch area (% of the image)")
    ax.set_ylabel("targeted success")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def a90(points: Sequence[tuple[float, float]], goal: float = 0.9) -> float | None:
    """Smallest area reaching ``goal`` success, interpolated linearly between *measured* sizes only
    (the smallest measured size if it already reaches the goal; None if none does).

    >>> round(a90([(0.02, 0.1), (0.05, 0.5), (0.1, 0.95)]), 4)
    0.0944
    """
    pts = sorted(points)
    for i, (a1, s1) in enumerate(pts):
        if s1 >= goal:
            if i == 0:
                return a1
            a0, s0 = pts[i - 1]
            return a0 + (goal - s0) * (a1 - a0) / (s1 - s0)
    return None
