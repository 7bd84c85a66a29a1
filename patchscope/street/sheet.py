"""A patch's print sheet, laid out in millimetres: the patch at its real size, crop marks, a centimetre ruler, the
patch's identity and a colour chart of the printable palette framed by four ArUco markers.

:func:`layout_sheet` is a pure function of sizes (no PDF library needed); :mod:`patchscope.street.pdf` draws the
result. Every position is in millimetres from the page's top-left corner, x to the right, y down.

>>> s = layout_sheet(7, 32, sign_width_mm=750.0)
>>> round(s.patch.w, 2), s.paper, s.ruler.length_mm
(164.06, 'a4', 190)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from patchscope.errors import PatchscopeError
from patchscope.validate import check_int

#: paper sizes (width, height) in millimetres, portrait
PAPERS: dict[str, tuple[float, float]] = {"a4": (210.0, 297.0), "a3": (297.0, 420.0), "letter": (215.9, 279.4)}
#: the blank border of every side of the page (most printers cannot print closer to the edge)
MARGIN_MM = 10.0
#: the height of one line of the identity text
LINE_MM = 4.5
#: crop marks: their distance from the patch's edge and their length
CROP_GAP_MM, CROP_LEN_MM = 2.0, 5.0
#: the ruler's height (ticks and labels) and the space above it
RULER_MM, RULER_GAP_MM = 10.0, 4.0
#: the colour chart: one cell's side, cells a row, marker side, the gap between markers and cells, space above
CELL_MM, CHART_COLUMNS, MARKER_MM, MARKER_GAP_MM, CHART_GAP_MM = 12.0, 9, 14.0, 3.0, 8.0
#: the line of text under the chart
CHART_NOTE_MM = 6.0
#: the ArUco dictionary of the chart's markers, and their ids at the top-left, top-right, bottom-right, bottom-left
ARUCO_DICTIONARY, MARKER_IDS = "DICT_4X4_50", (0, 1, 2, 3)
#: the dots per inch a sheet may be rendered at
DPI_RANGE = (72, 1200)

_UNITS = {"mm": 1.0, "cm": 10.0, "in": 25.4}


def parse_length(text: str, name: str = "length") -> float:
    """A length with its unit (``75cm``, ``750mm``, ``30in``, ``29.5 cm``) in millimetres.

    >>> parse_length("75cm"), parse_length("750mm"), parse_length("30in")
    (750.0, 750.0, 762.0)
    """
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(mm|cm|in)\s*", text.lower())
    if found is None or float(found[1]) <= 0:
        raise PatchscopeError(
            f"{name} {text!r}: give a length above 0 with its unit, e.g. 75cm, 750mm or 30in", params=(name,)
        )
    return float(found[1]) * _UNITS[found[2]]


@dataclass(frozen=True)
class Rect:
    """A rectangle on the page: top-left corner (``x``, ``y``) and size (``w``, ``h``), in millimetres."""

    x: float
    y: float
    w: float
    h: float

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def corners(self) -> list[tuple[float, float]]:
        """Top-left, top-right, bottom-right, bottom-left (the order ArUco gives a marker's corners)."""
        return [(self.x, self.y), (self.x + self.w, self.y), (self.x + self.w, self.bottom), (self.x, self.bottom)]


@dataclass(frozen=True)
class Ruler:
    """A centimetre ruler: ``ticks`` one per millimetre, (x, length); ``labels`` one per centimetre, (x, text)."""

    x: float
    y: float
    length_mm: int
    ticks: tuple[tuple[float, float], ...]
    labels: tuple[tuple[float, str], ...]


@dataclass(frozen=True)
class ColourChart:
    """The printable colours as cells, framed by four ArUco markers (``marker_ids`` of ``dictionary``, at
    ``markers``: top-left, top-right, bottom-right, bottom-left), so that a photograph of it can be rectified."""

    box: Rect
    cells: tuple[Rect, ...]
    colours: tuple[tuple[float, float, float], ...]
    markers: tuple[Rect, ...]
    marker_ids: tuple[int, ...] = MARKER_IDS
    dictionary: str = ARUCO_DICTIONARY


@dataclass(frozen=True)
class SheetLayout:
    """Where everything goes on the page (millimetres from the top-left corner).

    Attributes:
        paper: the paper's name; ``page`` its (width, height).
        patch: where the patch goes, at its real size; ``side`` its pixels a row, ``dpi`` the resolution its
            image is drawn at (``image_pixels`` a row, each patch pixel a block of whole device pixels or nearly).
        share: the patch's share of the sign's width; ``sign_width_mm`` the sign it was sized for (None when the
            width was given directly).
        crop_marks: line segments (x1, y1, x2, y2) at the patch's corners.
        ruler, chart: the ruler and the colour chart.
        lines: the identity text, one entry a line, from ``text_y`` down.
    """

    paper: str
    page: tuple[float, float]
    patch: Rect
    side: int
    dpi: int
    share: float
    sign_width_mm: float | None
    crop_marks: tuple[tuple[float, float, float, float], ...]
    ruler: Ruler
    chart: ColourChart
    lines: tuple[str, ...]
    text_y: float

    @property
    def image_pixels(self) -> int:
        """The side, in pixels, of the patch's image at ``dpi``."""
        return max(self.side, round(self.patch.w / 25.4 * self.dpi))

    @property
    def mm_per_pixel(self) -> float:
        """One patch pixel's printed side."""
        return self.patch.w / self.side

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        return {**asdict(self), "image_pixels": self.image_pixels}


def layout_sheet(
    side: int,
    image_size: int,
    *,
    sign_width_mm: float | None = None,
    width_mm: float | None = None,
    paper: str = "a4",
    dpi: int = 300,
    colours: Sequence[Sequence[float]] | None = None,
    lines: Sequence[str] = (),
) -> SheetLayout:
    """The page of a ``side``-px patch made on ``image_size``-px images of a sign that fills them (GTSRB's crops
    are the sign's bounding box), printed for a sign ``sign_width_mm`` wide, or ``width_mm`` wide itself.

    Args:
        side: the patch's pixels a row; image_size: the images' side; the patch's share of the sign is their ratio.
        sign_width_mm: the real sign's width (give this or ``width_mm``).
        width_mm: the patch's printed width instead.
        paper: ``a4``, ``a3`` or ``letter``.
        dpi: the resolution the patch's image is drawn at (pixel-sharp: each patch pixel a block).
        colours: the chart's intended colours, RGB in [0, 1] (default: the 27 of ``printable_colours``).
        lines: the identity text printed above the patch.

    Returns:
        A :class:`SheetLayout`; a patch too large for the paper raises :class:`PatchscopeError`.

    >>> s = layout_sheet(10, 32, width_mm=50.0, paper="letter")
    >>> s.patch.w, s.share, len(s.chart.cells), s.ruler.ticks[10]
    (50.0, 0.3125, 27, (20.0, 5.0))
    """
    share = _share(side, image_size)
    width = printed_width(side, image_size, sign_width_mm, width_mm)
    page = _paper(paper)
    dpi = check_int("dpi", dpi, *DPI_RANGE)
    chart_h = _chart_height(len(colours) if colours is not None else 27)
    text_h = len(lines) * LINE_MM + (2.0 if lines else 0.0)
    frame = CROP_GAP_MM + CROP_LEN_MM
    fixed_h = text_h + 2 * frame + RULER_GAP_MM + RULER_MM + CHART_GAP_MM + chart_h + CHART_NOTE_MM
    largest = min(page[0] - 2 * MARGIN_MM - 2 * frame, page[1] - 2 * MARGIN_MM - fixed_h)
    if width > largest + 1e-9:
        _too_large(width, largest, paper, sign_width_mm is not None)
    patch = Rect((page[0] - width) / 2, MARGIN_MM + text_h + frame, width, width)
    ruler = _ruler(MARGIN_MM, patch.bottom + frame + RULER_GAP_MM, page[0] - 2 * MARGIN_MM)
    chart = _chart(page[0], ruler.y + RULER_MM + CHART_GAP_MM, colours)
    return SheetLayout(
        paper, page, patch, side, dpi, share, sign_width_mm, _crop_marks(patch), ruler, chart, tuple(lines), MARGIN_MM
    )


def _share(side: int, image_size: int) -> float:
    side, image_size = check_int("side", side, 1), check_int("image_size", image_size, 1)
    if side > image_size:
        raise PatchscopeError(f"a {side}px patch is larger than its {image_size}px images")
    return side / image_size


def printed_width(side: int, image_size: int, sign_width_mm: float | None, width_mm: float | None) -> float:
    """The printed width in millimetres of a ``side``-px patch made on ``image_size``-px images: ``width_mm``, or its
    share of a sign ``sign_width_mm`` wide (one of the two is given).

    >>> printed_width(8, 32, 750.0, None), printed_width(8, 32, None, 20.0)
    (187.5, 20.0)
    """
    share = _share(side, image_size)
    if (sign_width_mm is None) == (width_mm is None):
        raise PatchscopeError(
            "give width (the patch's printed width) or sign_width (the real sign's), one of the two",
            params=("sign_width", "width"),
        )
    given, name = (sign_width_mm, "sign_width") if sign_width_mm is not None else (width_mm, "width")
    if given is None or not (math.isfinite(given) and given > 0):
        raise PatchscopeError(f"{name} must be a length above 0 mm, got {given}", params=(name,))
    return share * sign_width_mm if sign_width_mm is not None else float(given)


def _paper(paper: str) -> tuple[float, float]:
    if paper not in PAPERS:
        raise PatchscopeError(f"paper {paper!r}: use {', '.join(PAPERS)}", params=("paper",))
    return PAPERS[paper]


def _too_large(width: float, largest: float, paper: str, by_sign: bool) -> None:
    w, h = PAPERS[paper]
    bigger = [p for p, (pw, ph) in PAPERS.items() if pw > w and ph > h]
    knob = "a smaller sign_width" if by_sign else "a smaller width"
    remedy = f"{' or '.join(bigger)} paper or {knob}" if bigger else knob
    raise PatchscopeError(
        f"the patch prints {width:.1f} mm wide and does not fit {paper} paper, which holds at most "
        f"{max(largest, 0):.1f} mm with its {MARGIN_MM:g} mm margins, the ruler and the colour chart: use {remedy}",
        params=("sign_width" if by_sign else "width",),
    )


def _crop_marks(r: Rect) -> tuple[tuple[float, float, float, float], ...]:
    """Two short lines at each corner of ``r``, ``CROP_GAP_MM`` away from it, along its edges' extensions."""
    g, n = CROP_GAP_MM, CROP_GAP_MM + CROP_LEN_MM
    marks = []
    for x, sx in ((r.x, -1), (r.x + r.w, 1)):
        for y, sy in ((r.y, -1), (r.bottom, 1)):
            marks += [(x + sx * g, y, x + sx * n, y), (x, y + sy * g, x, y + sy * n)]
    return tuple(marks)


def _ruler(x: float, y: float, room: float) -> Ruler:
    """A ruler from ``x`` as long as whole centimetres fit in ``room``: a tick every millimetre (5 mm at each
    centimetre, 3.5 mm at each half), a label at each centimetre."""
    length = int(room // 10) * 10
    ticks = tuple((x + k, 5.0 if k % 10 == 0 else 3.5 if k % 5 == 0 else 2.0) for k in range(length + 1))
    labels = tuple((x + k, str(k // 10)) for k in range(0, length + 1, 10))
    return Ruler(x, y, length, ticks, labels)


def _chart_height(count: int) -> float:
    return max(math.ceil(count / CHART_COLUMNS) * CELL_MM, 2 * MARKER_MM + MARKER_GAP_MM)


def _chart(page_w: float, y: float, colours: Sequence[Sequence[float]] | None) -> ColourChart:
    """The chart centred on the page from ``y``: markers at the box's corners, the cells between them."""
    if colours is None:
        from patchscope.attacks.losses import printable_colours

        colours = printable_colours().tolist()
    rgb = tuple((round(float(c[0]), 6), round(float(c[1]), 6), round(float(c[2]), 6)) for c in colours)
    rows = math.ceil(len(rgb) / CHART_COLUMNS)
    w = CHART_COLUMNS * CELL_MM + 2 * (MARKER_MM + MARKER_GAP_MM)
    box = Rect((page_w - w) / 2, y, w, _chart_height(len(rgb)))
    left, top = box.x + MARKER_MM + MARKER_GAP_MM, y + (box.h - rows * CELL_MM) / 2
    cells = tuple(
        Rect(left + (i % CHART_COLUMNS) * CELL_MM, top + (i // CHART_COLUMNS) * CELL_MM, CELL_MM, CELL_MM)
        for i in range(len(rgb))
    )
    m, right, low = MARKER_MM, box.x + box.w - MARKER_MM, box.bottom - MARKER_MM
    markers = (Rect(box.x, y, m, m), Rect(right, y, m, m), Rect(right, low, m, m), Rect(box.x, low, m, m))
    return ColourChart(box, cells, rgb, markers)
