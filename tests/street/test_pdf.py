"""The sheet's PDF read back: one page of the paper's size, the patch's image placed at its real size and drawn
pixel-sharp, four ArUco markers; and its record beside it. Skipped where the print extra or pypdf is absent."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("fpdf", reason="the print extra is not installed (pip install 'patchscope[print]')")
pytest.importorskip("cv2", reason="the print extra is not installed (pip install 'patchscope[print]')")
pypdf = pytest.importorskip("pypdf", reason="pypdf (the test's PDF reader) is not installed")

from patchscope.attacks import load_patch  # noqa: E402
from patchscope.street import PAPERS, print_sheet  # noqa: E402

PT = 72 / 25.4  # points a millimetre


def _placed_images(page) -> list[tuple[str, list[float]]]:
    """(XObject name, [a, b, c, d, e, f] of the ``cm`` before it) for each image drawn on ``page``."""
    from pypdf.generic import ContentStream

    placed, last_cm = [], None
    for operands, op in ContentStream(page.get_contents(), page.pdf).operations:
        if op == b"cm":
            last_cm = [float(v) for v in operands]
        elif op == b"Do":
            placed.append((str(operands[0]), last_cm))
    return placed


@pytest.mark.parametrize(
    ("paper", "spec", "kwargs"),
    [
        ("a4", "zoo:gtsrb-cnn/stop-yield", {"sign_width_mm": 450.0}),
        ("letter", "zoo:gtsrb-vit/stop-yield-small", {"width_mm": 33.3}),
    ],
)
def test_the_pdf_is_one_page_holding_the_patch_at_its_real_size_pixel_sharp(tmp_path, paper, spec, kwargs):
    sheet = print_sheet(spec, tmp_path / "sheet.pdf", paper=paper, dpi=150, **kwargs)
    patch = load_patch(spec)
    want_mm = kwargs.get("width_mm") or patch.side / patch.image_size * kwargs["sign_width_mm"]
    reader = pypdf.PdfReader(tmp_path / "sheet.pdf")
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (float(box.width) / PT, float(box.height) / PT) == pytest.approx(PAPERS[paper], abs=0.01)
    page = reader.pages[0]
    xobjects = page["/Resources"]["/XObject"]
    placed = _placed_images(page)
    sizes = {name: (int(xobjects[name]["/Width"]), int(xobjects[name]["/Height"])) for name, _ in placed}
    (name, cm), *markers = sorted(placed, key=lambda p: -p[1][0])  # the largest image is the patch
    assert abs(cm[0] / PT - want_mm) < 0.1 and abs(cm[3] / PT - want_mm) < 0.1 and cm[1] == cm[2] == 0
    assert abs(cm[4] / PT - sheet.layout.patch.x) < 0.1  # left edge; PDF y grows upwards from the bottom
    assert abs(float(box.height) - cm[5] - cm[3] - sheet.layout.patch.y * PT) < 0.1 * PT
    assert sizes[name] == (sheet.layout.image_pixels,) * 2 == (round(want_mm / 25.4 * 150),) * 2
    _assert_pixel_sharp(xobjects[name].decode_as_image(), patch)
    assert len(markers) == 4 and all(abs(m[0] / PT - 14.0) < 0.01 for _, m in markers)


def _assert_pixel_sharp(img, patch) -> None:
    """Each patch pixel a block of its own colour (white off the mask), and no colour that is not the patch's."""
    import numpy as np

    got = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).float()
    want = (patch.pixels * patch.mask + (1 - patch.mask)).mul(255).round().permute(1, 2, 0)
    side, px = patch.side, img.width
    centres = ((torch.arange(side) + 0.5) * px / side).long()
    assert torch.equal(got[centres][:, centres], want)
    palette = {tuple(v) for v in want.view(-1, 3).tolist()}
    assert {tuple(v) for v in torch.unique(got.view(-1, 3), dim=0).tolist()} <= palette  # no blended colours


def test_the_record_beside_it_names_the_patch_and_holds_the_chart(tmp_path):
    import hashlib

    from patchscope.attacks import patch_zoo_dir

    sheet = print_sheet("zoo:gtsrb-cnn/stop-yield", tmp_path / "s.pdf", width_mm=40.0)
    record = json.loads((tmp_path / "s.json").read_text())
    digest = hashlib.sha256((patch_zoo_dir() / "gtsrb-cnn/stop-yield/patch.safetensors").read_bytes()).hexdigest()
    assert record["sha256"] == sheet.sha256 == digest and record["patch"] == "zoo:gtsrb-cnn/stop-yield"
    chart = record["layout"]["chart"]
    assert len(chart["cells"]) == len(chart["colours"]) == 27 and chart["marker_ids"] == [0, 1, 2, 3]
    assert record["layout"]["patch"]["w"] == 40.0 and digest[:16] in record["layout"]["lines"][0]
    assert sheet.as_dict()["printed_width_mm"] == 40.0
