"""`patchscope print`: the sheet written, lengths with units, and every refusal one line with exit 2, before any
work and with nothing written."""

from __future__ import annotations

import json
import sys

import pytest

from tests.cli._contract import assert_contract, invoke

PATCH = "zoo:gtsrb-vit/stop-yield-small"


def _needs_print_extra() -> None:
    pytest.importorskip("fpdf", reason="the print extra is not installed (pip install 'patchscope[print]')")
    pytest.importorskip("cv2", reason="the print extra is not installed (pip install 'patchscope[print]')")


def test_print_writes_the_sheet_and_its_record(tmp_path):
    _needs_print_extra()
    out = tmp_path / "sheet.pdf"
    r = invoke("print", PATCH, "--sign-width", "15.75in", "--dpi", "100", "--out", str(out), "--json")
    assert_contract(r)
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    assert shown["printed_width_mm"] == pytest.approx(12 / 32 * 400.05) and shown["paper"] == "a4"
    assert out.read_bytes().startswith(b"%PDF") and json.loads((tmp_path / "sheet.json").read_text())["sha256"]
    table = invoke("print", PATCH, "--width", "16cm", "--paper", "letter", "--out", str(out))
    assert table.code == 0 and "printed 160.0 mm wide" in table.out and "letter" in table.out


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--sign-width", "75"], "--sign-width '75': give a length above 0 with its unit, e.g. 75cm, 750mm or 30in"),
        (["--width", "-2cm"], "--width '-2cm': give a length above 0 with its unit"),
        ([], "give --width (the patch's printed width) or --sign-width (the real sign's), one of the two"),
        (["--sign-width", "75cm", "--width", "3cm"], "give --width"),
        (["--width", "3cm", "--paper", "a5"], "--paper 'a5': use a4, a3, letter"),
        (["--width", "3cm", "--dpi", "20"], "--dpi must be in 72..1200, got 20"),
        (["--sign-width", "75cm"], "the patch prints 281.2 mm wide and does not fit a4 paper"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, line):
    _needs_print_extra()
    r = invoke("print", PATCH, *args, "--out", str(tmp_path / "sheet.pdf"))
    assert_contract(r)
    assert r.code == 2 and len(r.err_lines) == 1 and line in r.err_lines[0], r.err
    assert list(tmp_path.iterdir()) == []


def test_out_is_checked_before_the_patch_is_even_read(tmp_path):
    (tmp_path / "afile").write_text("x")
    for out, line in [
        (tmp_path / "afile" / "sheet.pdf", "afile: a file is there"),
        (tmp_path, "a folder; give the PDF to write"),
        (tmp_path / "sheet.json", "give the PDF to write"),
        (tmp_path / ("a" * 300 + ".pdf"), "too long for a file name"),
    ]:
        r = invoke("print", str(tmp_path / "no-such-patch"), "--width", "3cm", "--out", str(out))
        assert r.code == 2 and len(r.err_lines) == 1 and "--out" in r.err_lines[0] and line in r.err_lines[0], r.err
    (tmp_path / "sheet.json").mkdir()  # a folder where the record goes
    r = invoke("print", PATCH, "--width", "3cm", "--out", str(tmp_path / "sheet.pdf"))
    assert r.code == 2 and "sheet.json there is a folder" in r.err_lines[0]


def test_without_the_print_extra_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fpdf", None)  # import fpdf now raises ImportError
    r = invoke("print", PATCH, "--width", "3cm", "--out", str(tmp_path / "sheet.pdf"))
    assert_contract(r)
    assert r.code == 2 and r.err_lines == [
        "patchscope: error: printing needs the print extra (fpdf is missing): pip install 'patchscope[print]'"
    ]
    assert list(tmp_path.iterdir()) == []
