"""Calibration from a synthetic photograph: the sheet's chart rendered, its colours changed by a known affine
transform plus noise, seen through a known homography; the fit must recover the transform."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'patchscope[calibrate]')")

from patchscope.attacks.printer import PrinterModel, fit_printer  # noqa: E402
from patchscope.errors import PatchscopeError  # noqa: E402
from patchscope.street import calibrate_printer, layout_sheet, render_chart  # noqa: E402
from patchscope.street.printing import SHEET_FORMAT  # noqa: E402

#: the printer (and camera) of the synthetic photo: observed = M @ intended + b
M = np.array([[0.85, 0.06, 0.0], [0.02, 0.78, 0.05], [0.05, 0.0, 0.72]])
B = np.array([0.06, 0.05, 0.09])


def _sheet(tmp_path):
    layout = layout_sheet(7, 32, sign_width_mm=600.0)
    path = tmp_path / "sheet.json"
    path.write_text(json.dumps({"format": SHEET_FORMAT, "layout": layout.as_dict()}))
    return layout, path


def _photo(layout, path, noise: float = 0.01, seed: int = 0) -> None:
    """The chart as printed by (M, B), with noise, photographed at an angle (a known homography) on a grey table."""
    img, _ = render_chart(layout.chart, px_per_mm=5.0)
    rng = np.random.default_rng(seed)
    printed = img.astype(np.float64) / 255 @ M.T + B + rng.normal(0, noise, img.shape)
    printed = (np.clip(printed, 0, 1) * 255).round().astype(np.uint8)
    h, w = printed.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[120, 90], [w + 60, 140], [w + 20, h + 170], [80, h + 110]])  # tilted and rotated
    warp = cv2.getPerspectiveTransform(src, dst)
    photo = cv2.warpPerspective(printed, warp, (w + 200, h + 260), flags=cv2.INTER_LINEAR, borderValue=(90, 90, 90))
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))


def test_the_fit_recovers_a_known_colour_transform_through_a_known_homography(tmp_path):
    layout, sheet = _sheet(tmp_path)
    _photo(layout, tmp_path / "photo.png")
    result = calibrate_printer(tmp_path / "photo.png", sheet, tmp_path / "printer.json")
    fitted = np.array(result.printer.matrix)
    assert np.abs(fitted[:, :3] - M).max() < 0.03 and np.abs(fitted[:, 3] - B).max() < 0.02
    intended = np.array(layout.chart.colours)
    assert np.abs(np.array(result.printer.observed) - (intended @ M.T + B)).max() < 0.02  # each cell read right
    assert result.printer.rms < 0.01 and result.mean_error > 0.05
    loaded = PrinterModel.load(tmp_path / "printer.json")
    assert loaded == result.printer


def test_a_photo_without_the_chart_is_one_clear_refusal(tmp_path):
    _, sheet = _sheet(tmp_path)
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((300, 400, 3), 200, np.uint8))
    with pytest.raises(PatchscopeError, match="the colour chart was not found: markers 0, 1, 2, 3 of 0, 1, 2, 3"):
        calibrate_printer(tmp_path / "blank.png", sheet, tmp_path / "printer.json")
    assert not (tmp_path / "printer.json").exists()


def test_the_printer_model_applies_its_transform_and_refuses_other_files(tmp_path):
    from patchscope.attacks.losses import printable_colours

    intended = printable_colours()
    observed = intended @ torch.tensor(M, dtype=torch.float32).T + torch.tensor(B, dtype=torch.float32)
    p = fit_printer(intended, observed)
    assert np.allclose(np.array(p.matrix), np.c_[M, B], atol=1e-5) and p.rms < 1e-5
    pixels = intended.T.reshape(3, 3, 9)  # the colours as a tiny image
    assert torch.allclose(p.apply(pixels).reshape(3, 27).T, observed.clamp(0, 1), atol=1e-5)
    (tmp_path / "junk.json").write_text('{"format": "something else"}')
    with pytest.raises(PatchscopeError, match="printer .*junk.json: not a printer file"):
        PrinterModel.load(tmp_path / "junk.json")
    with pytest.raises(PatchscopeError, match="do not span the colour space"):
        fit_printer(torch.zeros(5, 3), torch.zeros(5, 3))
