"""The print sheet's layout in millimetres: the patch's real size, exact ruler ticks, and refusals (no PDF library)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchscope.errors import PatchscopeError
from patchscope.street.sheet import MARGIN_MM, PAPERS, Rect, layout_sheet, parse_length, printed_width


@pytest.mark.parametrize(
    ("text", "mm"), [("75cm", 750.0), ("750mm", 750.0), ("30in", 762.0), ("29.5 cm", 295.0), (" .5IN ", 12.7)]
)
def test_lengths_are_read_with_their_units(text, mm):
    assert parse_length(text) == pytest.approx(mm)


@pytest.mark.parametrize("text", ["75", "75 m", "cm", "-3cm", "0mm", "1e3mm", "75cm60", ""])
def test_a_length_without_a_known_unit_or_above_zero_is_refused(text):
    with pytest.raises(PatchscopeError, match="give a length above 0 with its unit"):
        parse_length(text, "sign_width")


def _overlap(a: Rect, b: Rect) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.bottom and b.y < a.bottom


@settings(max_examples=60, deadline=None)
@given(
    image_size=st.sampled_from([32, 64, 224]),
    frac=st.floats(0.05, 1.0),
    sign=st.floats(100.0, 1200.0),
    paper=st.sampled_from(sorted(PAPERS)),
)
def test_the_patch_prints_at_its_share_of_the_sign_and_everything_stays_on_the_page(image_size, frac, sign, paper):
    side = max(1, round(frac * image_size))
    try:
        s = layout_sheet(side, image_size, sign_width_mm=sign, paper=paper)
    except PatchscopeError as e:  # refused only above the largest width the paper holds, which it does hold
        largest = float(re.search(r"holds at most ([0-9.]+) mm", str(e))[1])
        assert side / image_size * sign > largest
        assert layout_sheet(side, image_size, width_mm=largest - 0.05, paper=paper).patch.w == largest - 0.05
        return
    assert abs(s.patch.w - side / image_size * sign) < 0.1 and s.patch.w == s.patch.h
    assert s.share == side / image_size and s.mm_per_pixel == pytest.approx(s.patch.w / side)
    w, h = s.page
    parts = [s.patch, s.chart.box, Rect(s.ruler.x, s.ruler.y, s.ruler.length_mm, 10.0)]
    for r in parts:
        assert MARGIN_MM - 1e-9 <= r.x and r.x + r.w <= w - MARGIN_MM + 1e-9
        assert MARGIN_MM - 1e-9 <= r.y and r.bottom <= h - MARGIN_MM + 1e-9
    assert not any(_overlap(a, b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    for x1, y1, x2, y2 in s.crop_marks:  # outside the patch, on the page
        assert not (s.patch.x < (x1 + x2) / 2 < s.patch.x + s.patch.w and s.patch.y < (y1 + y2) / 2 < s.patch.bottom)
        assert min(x1, x2, y1, y2) >= 0 and max(x1, x2) <= w and max(y1, y2) <= h


def test_a_width_given_directly_is_the_printed_width():
    s = layout_sheet(7, 32, width_mm=42.0)
    assert s.patch.w == 42.0 and s.sign_width_mm is None
    assert s.image_pixels == round(42.0 / 25.4 * 300)
    assert printed_width(7, 32, 750.0, None) == pytest.approx(164.0625)


def test_ruler_ticks_are_one_millimetre_apart_exactly_and_labelled_each_centimetre():
    s = layout_sheet(7, 32, sign_width_mm=750.0)
    r = s.ruler
    assert r.length_mm == int((PAPERS["a4"][0] - 2 * MARGIN_MM) // 10) * 10 == 190
    assert len(r.ticks) == r.length_mm + 1
    assert all(x - r.x == k for k, (x, _) in enumerate(r.ticks))
    assert [length for _, length in r.ticks[:11]] == [5.0, 2.0, 2.0, 2.0, 2.0, 3.5, 2.0, 2.0, 2.0, 2.0, 5.0]
    assert [(x - r.x, t) for x, t in r.labels[:3]] == [(0.0, "0"), (10.0, "1"), (20.0, "2")]
    assert r.labels[-1][1] == "19"


def test_the_chart_holds_every_printable_colour_between_four_markers():
    from patchscope.attacks.losses import printable_colours

    s = layout_sheet(7, 32, sign_width_mm=600.0)
    c = s.chart
    assert [v for rgb in c.colours for v in rgb] == pytest.approx(printable_colours().flatten().tolist())
    assert len(c.cells) == 27 and len(c.markers) == 4 and c.marker_ids == (0, 1, 2, 3)
    tl, tr, br, bl = c.markers
    assert tl.x == bl.x < min(cell.x for cell in c.cells) and tr.x == br.x > max(cell.x + cell.w for cell in c.cells)
    assert tl.y == tr.y == c.box.y and bl.bottom == br.bottom == c.box.bottom
    assert not any(_overlap(m, cell) for m in c.markers for cell in c.cells)


def test_a_patch_too_large_for_the_paper_is_refused_naming_what_to_change():
    with pytest.raises(PatchscopeError, match=r"prints 234.4 mm wide and does not fit a4 paper.*a3 paper") as e:
        layout_sheet(10, 32, sign_width_mm=750.0)
    assert e.value.params == ("sign_width",)
    layout_sheet(10, 32, sign_width_mm=750.0, paper="a3")  # fits there
    with pytest.raises(PatchscopeError, match="does not fit a3 paper.*use a smaller width$"):
        layout_sheet(10, 32, width_mm=300.0, paper="a3")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "give width .* or sign_width"),
        ({"sign_width_mm": 750.0, "width_mm": 50.0}, "one of the two"),
        ({"width_mm": 0.0}, "width must be a length above 0"),
        ({"sign_width_mm": float("inf")}, "sign_width must be a length above 0"),
        ({"width_mm": 50.0, "paper": "a5"}, "paper 'a5': use a4, a3, letter"),
        ({"width_mm": 50.0, "dpi": 5000}, "dpi must be in 72..1200"),
    ],
)
def test_bad_sizes_are_one_line(kwargs, match):
    with pytest.raises(PatchscopeError, match=match):
        layout_sheet(7, 32, **kwargs)
