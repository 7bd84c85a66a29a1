"""tools/resolution_table.py on hand-built study folders: rows per model, A90 between measured sizes, the figure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "resolution_table.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("resolution_table", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _model(out: Path, name: str, px: int, success: dict[float, float], per_sign: dict[float, float]) -> None:
    d = out / name
    _write(d / "model.json", {"model": name, "input_size": px, "arch": "cnn"})
    _write(d / "clean.json", {"models": {name: {"clean_accuracy": 0.99}}})
    for size, s in success.items():
        _write(
            d / f"universal-{size}" / "evaluate.json", {"models": {name: {"patch_area": size, "targeted_success": s}}}
        )
        layers = [
            {"adversarial_share": 0.1 * px / 32, "max_z": 2.0 * px / 32},
            {"adversarial_share": 0.5, "max_z": 9.0},
        ]
        _write(d / f"explain-{size}" / "explain.json", {"layers": layers, "footprint": {"side": 7 * px // 32}})
        if size in per_sign:
            _write(d / f"per-sign-{size}" / "metrics.json", {"targeted_success": per_sign[size]})


def test_table_rows_a90_and_figure(tool, tmp_path):
    _model(tmp_path, "cnn-64", 64, {0.024: 0.5, 0.048: 0.8, 0.098: 1.0}, {0.024: 0.9})
    _model(tmp_path, "cnn-32", 32, {0.024: 0.1, 0.048: 0.2, 0.098: 0.3}, {})
    matrix = {f"{tmp_path}/cnn-32/universal-0.048": {"cnn-32": 0.2, "cnn-64": 0.05}}
    _write(tmp_path / "transfer.json", {"matrix": matrix})
    tool.main(tmp_path)
    text = (tmp_path / "resolution.md").read_text()
    lines = text.split("\n\n")[0].splitlines()
    assert len(lines) == 4 and lines[2].startswith("| cnn-32 | cnn | 32 |")  # sorted by resolution
    assert "| cnn-32 (universal-0.048) | 20.0% | 5.0% |" in text
    row64 = [c.strip() for c in lines[3].strip("|").split("|")]
    assert row64[4:7] == ["50.0%", "80.0%", "100.0%"] and row64[7:10] == ["90.0%", "-", "-"]
    # A90 universal: 90% lies halfway between 4.8% (80%) and 9.8% (100%); per-sign reaches it at the smallest size
    assert row64[10:12] == ["7.3%", "2.4%"]
    assert row64[12:] == ["0.200", "4.0", "9.0"]  # the middle size's first-layer share and max z, and the max of all
    assert [c.strip() for c in lines[2].strip("|").split("|")][10] == "-"  # never reached 90%
    assert (tmp_path / "resolution.png").stat().st_size > 1000


def test_an_empty_folder_is_one_line(tool, tmp_path):
    with pytest.raises(SystemExit, match="no model folders"):
        tool.main(tmp_path)


def test_a_checkpoint_path_is_named_by_its_stem(tool, tmp_path):
    path = "runs/models/cnn-64ft.safetensors"
    _model(tmp_path, "cnn-64ft", 64, {0.048: 0.5}, {})
    _write(tmp_path / "cnn-64ft" / "model.json", {"model": path, "input_size": 64, "arch": "cnn"})
    _write(tmp_path / "transfer.json", {"matrix": {f"{tmp_path}/cnn-64ft/universal-0.048": {path: 0.5}}})
    tool.main(tmp_path)
    text = (tmp_path / "resolution.md").read_text()
    assert "| cnn-64ft | cnn | 64 |" in text and "| patch made on \\ measured on | cnn-64ft |" in text
    assert ".safetensors" not in text and tool.short("gtsrb-cnn") == "gtsrb-cnn"


def test_one_transfer_matrix_per_file(tool, tmp_path):
    _model(tmp_path, "cnn-32", 32, {0.048: 0.2}, {})
    _write(tmp_path / "transfer.json", {"matrix": {f"{tmp_path}/cnn-32/universal-0.048": {"cnn-32": 0.2}}})
    matrix = {f"{tmp_path}/resnet-32/universal-0.048": {"resnet-32": 0.4, "resnet-64": 0.1}}
    _write(tmp_path / "transfer-resnet.json", {"matrix": matrix})
    tool.main(tmp_path)
    blocks = (tmp_path / "resolution.md").read_text().split("\n\n")
    assert len(blocks) == 3  # the table, then one matrix per file, each with its own columns
    assert blocks[1].splitlines()[0] == "| patch made on \\ measured on | cnn-32 |"
    assert "| resnet-32 (universal-0.048) | 40.0% | 10.0% |" in blocks[2]
