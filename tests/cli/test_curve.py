import json
from pathlib import Path

from patchscope.attacks import shape_mask
from tests.conftest import run_cli


def test_curve_makes_one_patch_per_size_in_the_asked_shape(tmp_path: Path, tiny_model_path: Path):
    out = tmp_path / "curve"
    r = run_cli(
        "curve",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--eval-data",
        "demo",
        "--sizes",
        "0.05,0.1",
        "--steps",
        "2",
        "--limit",
        "8",
        "--candidates",
        "1",
        "--placements",
        "on-object",
        "--shape",
        "rect:1:2",
        "--out",
        str(out),
        env={"PATCHSCOPE_STORE": str(tmp_path / "runs.db")},
    )
    assert r.returncode == 0, r.stderr
    curve = json.loads((out / "curve.json").read_text())
    assert curve["shape"] == "rect:1:2" and "sticker" not in curve
    rows = curve["on-object"]["rows"]
    assert [row["size"] for row in rows] == [0.05, 0.1]
    for row in rows:  # each patch is the bar, not the square, and covers about the asked area
        assert row["area"] == float(shape_mask("rect:1:2", row["side"]).sum()) / 32**2 < row["side"] ** 2 / 32**2
        assert abs(row["area"] - row["size"]) < 0.01
        assert 0.0 <= row["success"] <= 1.0
    assert (out / "area.png").read_bytes()[:4] == b"\x89PNG"
