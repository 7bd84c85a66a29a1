"""Draw a :class:`~patchscope.street.sheet.SheetLayout` as a one-page PDF (fpdf2), the patch and the markers as
pixel-sharp images (nearest-neighbour blocks at the layout's dpi), the chart's cells as exact vector colours.

Needs the ``print`` extra (fpdf2 and OpenCV): :func:`require_print_extra` says so in one line where it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from patchscope.errors import PatchscopeError
from patchscope.io import atomic_path
from patchscope.street.sheet import SheetLayout

if TYPE_CHECKING:
    from PIL import Image

#: the install line the missing extras' errors give
PRINT_EXTRA = "pip install 'patchscope[print]'"


def require_print_extra() -> None:
    """Refuse, in one line, where fpdf2 or OpenCV (the ``print`` extra) is not installed."""
    try:
        import cv2  # noqa: F401
        import fpdf  # noqa: F401
    except ImportError as e:
        raise PatchscopeError(f"printing needs the print extra ({e.name} is missing): {PRINT_EXTRA}") from None


def aruco_marker(dictionary: str, marker_id: int) -> torch.Tensor:
    """The ArUco marker ``marker_id`` of ``dictionary`` (an OpenCV name such as ``DICT_4X4_50``) as a (m, m) uint8
    tensor, one element a module (black 0, white 255), its black border included.

    >>> aruco_marker("DICT_4X4_50", 0).shape  # doctest: +SKIP
    torch.Size([6, 6])
    """
    import cv2

    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary))
    modules = d.markerSize + 2
    return torch.from_numpy(cv2.aruco.generateImageMarker(d, marker_id, modules).copy())


def patch_image(pixels: torch.Tensor, mask: torch.Tensor, size: int) -> Image.Image:
    """The patch (3, s, s) in [0, 1] as an RGB image ``size`` pixels a side, enlarged by nearest neighbour (no
    smoothing: each patch pixel a block); white (the paper) where the mask is 0."""
    from PIL import Image

    rgb = (pixels.detach().cpu().float() * mask.cpu() + (1 - mask.cpu())).clamp(0, 1)
    img = Image.fromarray(rgb.mul(255).round().byte().permute(1, 2, 0).numpy(), "RGB")
    return img.resize((size, size), Image.Resampling.NEAREST)


def write_sheet_pdf(layout: SheetLayout, pixels: torch.Tensor, mask: torch.Tensor, path: Path, title: str) -> None:
    """Write ``layout`` with the patch ``pixels`` (3, s, s) and ``mask`` (s, s) as a one-page PDF at ``path``
    (atomically: nothing half-written)."""
    require_print_extra()
    from fpdf import FPDF

    pdf = FPDF(unit="mm", format=layout.page)
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.set_title(title)
    pdf.set_creator("patchscope")
    pdf.add_page()
    pdf.set_font("helvetica", size=8)
    for i, line in enumerate(layout.lines):
        pdf.text(layout.ruler.x, layout.text_y + (i + 0.8) * 4.5, line)
    r = layout.patch
    pdf.image(patch_image(pixels, mask, layout.image_pixels), x=r.x, y=r.y, w=r.w, h=r.h)
    pdf.set_line_width(0.2)
    for x1, y1, x2, y2 in layout.crop_marks:
        pdf.line(x1, y1, x2, y2)
    _draw_ruler(pdf, layout)
    _draw_chart(pdf, layout)
    with atomic_path(path) as tmp:
        pdf.output(str(tmp))


def _draw_ruler(pdf: Any, layout: SheetLayout) -> None:
    """The ruler's baseline, a tick a millimetre, a label a centimetre (``cm`` after the last)."""
    ruler = layout.ruler
    pdf.set_line_width(0.1)
    pdf.line(ruler.x, ruler.y, ruler.x + ruler.length_mm, ruler.y)
    for x, length in ruler.ticks:
        pdf.line(x, ruler.y, x, ruler.y + length)
    pdf.set_font("helvetica", size=6)
    for i, (x, text) in enumerate(ruler.labels):
        shown = f"{text} cm" if i == len(ruler.labels) - 1 else text
        pdf.text(x - pdf.get_string_width(text) / 2, ruler.y + 8.0, shown)


def _draw_chart(pdf: Any, layout: SheetLayout) -> None:
    """The chart's cells in their intended colours and its four markers as pixel-sharp images."""
    from PIL import Image

    chart = layout.chart
    for cell, rgb in zip(chart.cells, chart.colours):
        pdf.set_fill_color(*(round(c * 255) for c in rgb))
        pdf.rect(cell.x, cell.y, cell.w, cell.h, style="F")
    for rect, marker_id in zip(chart.markers, chart.marker_ids):
        modules = aruco_marker(chart.dictionary, marker_id)
        side = max(len(modules), round(rect.w / 25.4 * layout.dpi))
        img = Image.fromarray(modules.numpy(), "L").resize((side, side), Image.Resampling.NEAREST)
        pdf.image(img, x=rect.x, y=rect.y, w=rect.w, h=rect.h)
    pdf.set_font("helvetica", size=7)
    pdf.set_text_color(0, 0, 0)
    note = "The printable colours. Photograph the chart flat, all four markers in view, to calibrate the printer."
    pdf.text(chart.box.x, chart.box.bottom + 4.0, note)
