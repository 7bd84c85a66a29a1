"""`patchscope calibrate` and `attack --printer`: the printer file written from a photo, and one line for a photo
without the chart or a file that is not a printer's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli._contract import assert_contract, invoke


def test_calibrate_writes_the_printer_and_refuses_a_photo_without_the_chart(tmp_path):
    pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'patchscope[calibrate]')")
    from tests.street.test_calibrate import _photo, _sheet

    layout, sheet = _sheet(tmp_path)
    _photo(layout, tmp_path / "photo.png")
    r = invoke(
        "calibrate", str(tmp_path / "photo.png"), "--sheet", str(sheet), "--out", str(tmp_path / "p.json"), "--json"
    )
    assert_contract(r)
    assert r.code == 0, r.err
    assert json.loads(r.out)["rms"] < 0.01 and json.loads((tmp_path / "p.json").read_text())["format"]
    from PIL import Image

    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    bad = invoke("calibrate", str(tmp_path / "blank.png"), "--sheet", str(sheet), "--out", str(tmp_path / "q.json"))
    assert bad.code == 2 and len(bad.err_lines) == 1 and "the colour chart was not found" in bad.err_lines[0]
    assert not (tmp_path / "q.json").exists()
    missing = invoke("calibrate", str(tmp_path / "blank.png"), "--sheet", str(tmp_path / "nope.json"))
    assert missing.code == 2 and missing.err_lines == [
        f"patchscope: error: --sheet {tmp_path / 'nope.json'}: no such file"
    ]


def test_attack_refuses_a_file_that_is_not_a_printer(tmp_path):
    (tmp_path / "printer.json").write_text("[1, 2]")
    r = invoke(
        "attack", "--data", "demo", "--source", "stop", "--target", "yield", "--steps", "1",
        "--printer", str(tmp_path / "printer.json"), "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert_contract(r)
    assert r.code == 2 and "--printer" in r.err_lines[0] and "not a printer file" in r.err_lines[0]


def test_attack_with_a_printer_records_its_file_and_runs(tmp_path):
    from patchscope.attacks.losses import printable_colours
    from patchscope.attacks.printer import fit_printer

    colours = printable_colours()
    fit_printer(colours, colours * 0.8 + 0.1).save(tmp_path / "printer.json")
    r = invoke(
        "attack", "--data", "demo", "--source", "stop", "--target", "yield", "--steps", "2", "--batch-size", "8",
        "--candidates", "1", "--limit", "16", "--nps", "0.1", "--printer", str(tmp_path / "printer.json"),
        "--out", str(tmp_path / "run"), "--json",
    )  # fmt: skip
    assert_contract(r)
    assert r.code == 0, r.err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["printer"] == str(tmp_path / "printer.json")
