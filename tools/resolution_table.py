"""The table and figure of tools/resolution_study.sh: python tools/resolution_table.py OUT.

Reads OUT/MODEL/{model.json, clean.json, universal-S/evaluate.json, per-sign-S/metrics.json,
explain-S/explain.json} and OUT/transfer*.json; writes OUT/resolution.md (one row per model, then one transfer
matrix per file) and OUT/resolution.png (targeted success against area fraction, one line per model, one panel per
architecture; below, the first layer's max z-score against area fraction, one line per model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from patchscope.eval.figures import a90


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def short(model: str) -> str:
    """A model's name for tables: a zoo name as it is, a checkpoint path by its file stem."""
    return Path(model).stem if model.endswith(".safetensors") else model


def collect(folder: Path) -> list[dict[str, Any]]:
    """One dict per model folder: its resolution, clean accuracy and, per size, the measurements found."""
    rows = []
    for model_json in sorted(folder.glob("*/model.json")):
        d, head = model_json.parent, json.loads(model_json.read_text())
        clean = _read(d / "clean.json")
        row = {**head, "clean": next(iter(clean["models"].values()))["clean_accuracy"] if clean else None, "sizes": {}}
        for u in sorted(d.glob("universal-*/evaluate.json")):
            size = u.parent.name.removeprefix("universal-")
            universal = next(iter(json.loads(u.read_text())["models"].values()))
            per_sign = _read(d / f"per-sign-{size}" / "metrics.json")
            explain = _read(d / f"explain-{size}" / "explain.json")
            layers = explain["layers"] if explain else []
            row["sizes"][float(size)] = {
                "area": universal["patch_area"],
                "universal": universal["targeted_success"],
                "per_sign": per_sign["targeted_success"] if per_sign else None,
                "side": explain["footprint"]["side"] if explain else None,
                "share_first": layers[0]["adversarial_share"] if layers else None,
                "max_z_first": layers[0]["max_z"] if layers else None,
                "max_z": max((layer["max_z"] for layer in layers), default=None),
            }
        rows.append(row)
    return sorted(rows, key=lambda r: (r["arch"], r["input_size"]))


def _a90(row: dict[str, Any], key: str) -> str:
    points = [(m["area"], m[key]) for m in row["sizes"].values() if m[key] is not None]
    value = a90(points) if points else None
    return "-" if value is None else f"{100 * value:.1f}%"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: success per size (universal, per-sign), A90, and the mechanism at the middle size."""
    sizes = sorted({s for r in rows for s in r["sizes"]})
    mid = sizes[len(sizes) // 2] if sizes else None
    head = ["model", "arch", "px", "clean"]
    head += [f"universal {100 * s:.1f}%" for s in sizes] + [f"per-sign {100 * s:.1f}%" for s in sizes]
    head += ["A90 universal", "A90 per-sign"]
    head += [f"first-layer share @{100 * mid:.1f}%", "first-layer max z", "max z, any layer"] if mid else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [short(r["model"]), r["arch"], str(r["input_size"]), _pct(r["clean"])]
        cells += [_pct(r["sizes"].get(s, {}).get("universal")) for s in sizes]
        cells += [_pct(r["sizes"].get(s, {}).get("per_sign")) for s in sizes]
        cells += [_a90(r, "universal"), _a90(r, "per_sign")]
        m = r["sizes"].get(mid, {}) if mid else {}
        for key, fmt in (("share_first", "{:.3f}"), ("max_z_first", "{:.1f}"), ("max_z", "{:.1f}")) if mid else ():
            cells.append("-" if m.get(key) is None else fmt.format(m[key]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Success against area per architecture (a line per model; dashed: per-sign); first-layer max z against area."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = sorted({r["arch"] for r in rows})
    fig, axes = plt.subplots(2, len(archs), figsize=(4.8 * len(archs), 6.4), squeeze=False)
    for col, arch in enumerate(archs):
        top, bottom = axes[0][col], axes[1][col]
        mine = [r for r in rows if r["arch"] == arch]
        for i, r in enumerate(mine):
            color = plt.get_cmap("viridis")(i / max(1, len(mine) - 1) * 0.85)
            sizes = sorted(r["sizes"])
            area = [r["sizes"][s]["area"] for s in sizes]
            top.plot(
                area,
                [r["sizes"][s]["universal"] for s in sizes],
                "o-",
                color=color,
                label=f"{r['input_size']} px ({short(r['model'])})",
            )
            per = [(a, r["sizes"][s]["per_sign"]) for a, s in zip(area, sizes, strict=True)]
            per = [(a, v) for a, v in per if v is not None]
            if per:
                top.plot(*zip(*per, strict=True), "s--", color=color)
            zs = [(r["sizes"][s]["area"], r["sizes"][s]["max_z_first"]) for s in sizes]
            zs = [(a, z) for a, z in zs if z is not None]
            if zs:
                bottom.plot(
                    *zip(*zs, strict=True), "o-", color=color, label=f"{r['input_size']} px ({short(r['model'])})"
                )
        top.set(title=arch, xlabel="patch area (fraction of the image)", ylabel="Stop -> Yield success", ylim=(0, 1))
        top.legend(fontsize=7, title="solid: universal, dashed: per-sign", title_fontsize=7)
        bottom.set(xlabel="patch area (fraction of the image)", ylabel="first layer: max z (against clean)")
        bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def transfer_table(folder: Path) -> str:
    """Markdown: per ``transfer*.json`` file, each model's universal patch (rows) on each model (columns)."""
    text = ""
    for path in sorted(folder.glob("transfer*.json"), key=lambda p: p.stem):  # transfer.json first
        matrix = json.loads(path.read_text())["matrix"]
        models = list(next(iter(matrix.values())))
        lines = [
            "| patch made on \\ measured on | " + " | ".join(map(short, models)) + " |",
            "|" + "---|" * (len(models) + 1),
        ]
        for patch, row in matrix.items():
            cells = " | ".join(_pct(row[m]) for m in models)
            lines.append(f"| {Path(patch).parent.name} ({Path(patch).name}) | {cells} |")
        text += "\n" + "\n".join(lines) + "\n"
    return text


def main(folder: Path) -> None:
    rows = collect(folder)
    if not rows:
        sys.exit(f"{folder}: no model folders (MODEL/model.json) from tools/resolution_study.sh")
    text = table(rows) + transfer_table(folder)
    (folder / "resolution.md").write_text(text)
    figure(rows, folder / "resolution.png")
    print(text, end="")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
