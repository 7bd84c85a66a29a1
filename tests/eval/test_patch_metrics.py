from __future__ import annotations

import json
from pathlib import Path

import torch

from patchscope.attacks import Patch
from patchscope.eval import (
    DEFAULT_GRID,
    PatchSuccess,
    TransferMatrix,
    condition_label,
    patch_success,
    sweep_conditions,
    transfer_matrix,
)
from patchscope.eval.figures import a90, area_figure, condition_curves, transfer_figure
from patchscope.runs.report import Section, render_report


class ConstantOnPatch(torch.nn.Module):
    """Predicts class 1 when the top-left 4x4 corner is pure red (the 'patch'), class 0 otherwise."""

    classes = ("a", "b")
    input_size = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0, :4, :4].mean((1, 2)) > 0.9) & (x[:, 1:, :4, :4].mean((1, 2, 3)) < 0.1)
        return torch.stack([(~red).float(), red.float()], 1) * 10


def _red_patch() -> Patch:
    pixels = torch.zeros(3, 4, 4)
    pixels[0] = 1
    return Patch(pixels, torch.ones(4, 4), "on-object", (0, 0), 32, {"source": "a", "target": "b"})


def test_success_is_measured_per_condition_against_a_known_model():
    x, y = torch.full((6, 3, 32, 32), 0.5), torch.zeros(6, dtype=torch.long)
    out = patch_success(ConstantOnPatch(), x, y, _red_patch(), 1, [{}, {"brightness": 0.5}])
    assert isinstance(out, PatchSuccess)
    assert out.conditions[0]["targeted_success"] == 1.0  # seen as it is: red corner, class b
    assert out.conditions[1]["targeted_success"] == 0.0  # dimmed: no longer pure red
    assert out.targeted_success == 0.5 and out.clean_accuracy == 1.0 and out.images == 6
    assert abs(out.patch_area - 16 / 1024) < 1e-9
    assert out.as_dict()["targeted_success"] == 0.5 and json.loads(json.dumps(out.as_dict())) == out.as_dict()


def test_the_measurement_shows_its_own_progress(capsys, monkeypatch):
    """After an attack's last step the patch is still measured: that work has a progress line of its own."""
    monkeypatch.setenv("PATCHSCOPE_PROGRESS_SECONDS", "0")  # in a log: a line after every batch
    x, y = torch.full((6, 3, 32, 32), 0.5), torch.zeros(6, dtype=torch.long)
    quiet = patch_success(ConstantOnPatch(), x, y, _red_patch(), 1, [{}, {"brightness": 0.5}], batch_size=4)
    assert capsys.readouterr().err == ""
    shown = patch_success(ConstantOnPatch(), x, y, _red_patch(), 1, [{}, {"brightness": 0.5}], 4, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("measuring the patch: 6 images x 2 views: 1/3")
    assert lines[-1].startswith("measuring the patch: 6 images x 2 views: done, 3/3")
    assert shown == quiet


def test_transfer_matrix_shape_and_sticker_evaluation():
    x, y = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    sticker = Patch(torch.rand(3, 5, 5), torch.ones(5, 5), "sticker", None, 32)
    m = transfer_matrix(
        {"m1": ConstantOnPatch(), "m2": ConstantOnPatch()}, {"p": _red_patch(), "s": sticker}, x, y, 1, [{}]
    )
    assert isinstance(m, TransferMatrix) and m.metric == "targeted_success"
    assert set(m.success) == {"p", "s"} and set(m.success["p"]) == {"m1", "m2"}
    assert m.success["p"]["m1"] == 1.0 and m.as_dict()["matrix"] == m.success


def test_grid_and_sweeps_are_within_the_stated_ranges():
    assert len(DEFAULT_GRID) == 33
    for c in DEFAULT_GRID:
        assert abs(c["rotation"]) <= 15 and abs(c["yaw"]) <= 15 and abs(c["pitch"]) <= 15
        assert 0.85 <= c["scale"] <= 1.0 and 0.7 <= c["brightness"] <= 1.3
    assert max(c.get("yaw", 0) for c in sweep_conditions()) == 60
    assert condition_label({"yaw": 30.0, "scale": 1.0}) == "yaw=30"


def test_a90_interpolates_between_measured_points_only():
    assert a90([(0.05, 0.95)]) == 0.05
    assert a90([(0.02, 0.5), (0.04, 0.5)]) is None
    assert abs(a90([(0.02, 0.8), (0.04, 1.0)]) - 0.03) < 1e-12


def test_figures_and_report_render(tmp_path: Path):
    rows = [
        {"factor": "yaw", "yaw": v, "targeted_success": 1 - v / 60, "clean_accuracy": 1.0} for v in (0.0, 30.0, 60.0)
    ]
    condition_curves({"m": rows}, tmp_path / "c.png")
    transfer_figure({"m": {"m": 0.9, "n": 0.1}}, tmp_path / "t.png")
    area_figure({"m on-object": [(0.02, 0.1), (0.05, 0.6)]}, tmp_path / "a.png")
    for f in ("c.png", "t.png", "a.png"):
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = render_report(
        [
            Section(
                "Curves",
                "a <b>test</b>",
                [(tmp_path / "c.png", "curves")],
                {"columns": ["x"], "rows": [["<script>"]]},
                ["patchscope evaluate"],
            )
        ],
        tmp_path,
    )
    html = page.read_text()
    assert (
        "data:image/png;base64," in html and "&lt;script&gt;" in html and "http" not in html.replace("http-equiv", "")
    )


def test_by_image_success_names_the_images_that_resist():
    from patchscope.attacks.patch import PerImagePatches

    x, y = torch.full((4, 3, 32, 32), 0.5), torch.zeros(4, dtype=torch.long)
    pixels = torch.zeros(4, 3, 4, 4)
    pixels[:2, 0] = 1  # images 0 and 1 get the red corner, 2 and 3 a black one
    patches = PerImagePatches(pixels, torch.ones(4, 4), "on-object", torch.zeros(4, 2), 32)
    out = patch_success(ConstantOnPatch(), x, y, patches, 1, [{}, {"brightness": 0.5}], by_image=True)
    assert out.image_success == [0.5, 0.5, 0.0, 0.0]  # won undimmed only, and only where red
    assert patch_success(ConstantOnPatch(), x, y, _red_patch(), 1, [{}]).image_success is None
    assert "image_success" not in patch_success(ConstantOnPatch(), x, y, _red_patch(), 1, [{}]).as_dict()
