"""The three explain figures, drawn with matplotlib's Agg canvas (no display) and written atomically.

>>> import torch, tempfile, pathlib
>>> rows = [{"name": "stage0", "adversarial_share": 0.1, "natural_ratio": 0.9, "max_z": 1.0}]
>>> anomaly_figure(rows, pathlib.Path(tempfile.mkdtemp()) / "anomaly.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from patchscope.formatting import pct
from patchscope.io import atomic_path

Rows = Sequence[Mapping[str, Any]]
RED, BLUE, GREY = "#c0392b", "#2e6fba", "#7f8c8d"


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _rgb(image: torch.Tensor) -> object:
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _outline(ax: Axes, footprint: torch.Tensor | None) -> None:
    if footprint is None or not bool(footprint.any()):
        return
    rows, cols = footprint.nonzero(as_tuple=True)
    top, left, bottom, right = int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())
    ax.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5),
            right - left + 1,
            bottom - top + 1,
            fill=False,
            edgecolor="white",
            linewidth=1.2,
            linestyle="--",
        )
    )


def _short(name: str, width: int = 26) -> str:
    return name if len(name) <= width else name[: width - 1] + "\u2026"


def attention_figure(
    clean: torch.Tensor,
    patched: torch.Tensor,
    clean_heat: torch.Tensor,
    patched_heat: torch.Tensor,
    before: tuple[torch.Tensor, torch.Tensor],
    after: tuple[torch.Tensor, torch.Tensor],
    classes: Sequence[str],
    path: Path,
    footprint: torch.Tensor | None = None,
    true_label: int | None = None,
    heat_label: str = "Grad-CAM",
) -> None:
    """attention.png for one image: images ``(3, H, W)``, heatmaps ``(H, W)``, ``before``/``after``
    as ``(probs (k,), classes (k,))``; the footprint ``(H, W)`` is outlined on the patched panels;
    ``true_label`` gets a tick in the bars; ``heat_label`` names the heatmap method."""
    fig = Figure(figsize=(11, 6.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, squeeze=False, height_ratios=[1.1, 1], hspace=0.04)[:, 0]
    p_before, p_after = int(before[1][0]), int(after[1][0])
    panels = [
        (clean, None, f"clean: {_short(classes[p_before], 20)}\n({pct(float(before[0][0]))})"),
        (clean, clean_heat, f"clean: where it looks\n({heat_label})"),
        (patched, None, f"patched: {_short(classes[p_after], 20)}\n({pct(float(after[0][0]))})"),
        (patched, patched_heat, f"patched: where it looks\n({heat_label})"),
    ]
    for ax, (img, heat, title) in zip(top.subplots(1, 4), panels):
        ax.imshow(_rgb(img), interpolation="nearest")
        if heat is not None:
            ax.imshow(
                heat.detach().float().cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear"
            )
        if img is patched:
            _outline(ax, footprint)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    bars = bottom.subplots(1, 2, gridspec_kw={"wspace": 0.15})
    for ax, (probs, idx), label, colour in zip(
        bars, (before, after), ("before (clean)", "after (patched)"), (BLUE, RED)
    ):
        names = [
            _short(classes[int(c)]) + (" \u2713" if true_label is not None and int(c) == true_label else "")
            for c in idx
        ]
        _probability_bars(ax, names, probs.detach().float().cpu().tolist(), colour)
        ax.set_title(f"top-{len(names)} probabilities {label}", fontsize=10)
        ax.set_xlabel("probability")
    _save(fig, path)


def _probability_bars(ax: Axes, names: list[str], values: list[float], colour: str) -> None:
    """Horizontal bars of ``values`` (probabilities, the first on top) labelled ``names``, each with its value."""
    ys = list(range(len(values)))[::-1]
    ax.barh(ys, values, color=colour)
    ax.set_yticks(ys, names, fontsize=9)
    ax.set_xlim(0, 1)
    for y, v in zip(ys, values):
        inside = v > 0.85
        ax.text(
            v - 0.02 if inside else v + 0.02,
            y,
            f"{v:.2f}",
            va="center",
            ha="right" if inside else "left",
            fontsize=8,
            color="white" if inside else "black",
        )


def _names(rows: Rows) -> list[str]:
    return [str(r["name"]) for r in rows]


def _values(rows: Rows, key: str) -> list[float]:
    return [float(r[key]) if r.get(key) is not None else float("nan") for r in rows]


def propagation_figure(rows: Rows, path: Path, single: Rows | None = None, title: str = "") -> None:
    """propagation.png: adversarial share (red) and natural ratio (blue) per layer; ``single`` dashed."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    x = list(range(len(rows)))
    ax.axhline(1.0, color=GREY, linewidth=0.8, linestyle=":")
    lines = (("adversarial_share", "o", RED, "adversarial share"), ("natural_ratio", "s", BLUE, "natural ratio"))
    for which, style, width, alpha, data in (
        ("all images", "-", 2, 1.0, rows),
        ("one image", "--", 1, 0.5, single or []),
    ):
        for key, marker, colour, label in lines if data else ():
            ax.plot(
                x,
                _values(data, key),
                marker + style,
                color=colour,
                alpha=alpha,
                linewidth=width,
                label=f"{label} ({which})",
            )
    ax.set_xticks(x, _names(rows))
    ax.set_xlabel("layer")
    ax.set_ylabel("energy ratio")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "How the patch's signal grows layer by layer", fontsize=11)
    _save(fig, path)


def anomaly_figure(rows: Rows, path: Path, single: Rows | None = None, title: str = "") -> None:
    """anomaly.png: mean max_z per layer as bars; ``single`` as black dots; z = 0 and z = 3 marked."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    x = list(range(len(rows)))
    z = _values(rows, "max_z")
    ax.bar(x, z, color=[RED if v > 3 else "#e59866" for v in z], label="mean max_z (patched images)")
    if single:
        ax.plot(x, _values(single, "max_z"), "ko", label="max_z (one image)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(3, color=GREY, linewidth=0.8, linestyle="--", label="z = 3")
    ax.set_xticks(x, _names(rows))
    ax.set_xlabel("layer")
    ax.set_ylabel("z-score of the largest activation\nvs clean images")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Abnormal activations: largest activation vs clean", fontsize=11)
    _save(fig, path)
