"""From screen to street: a patch's print-ready page at its real size (:func:`print_sheet`, laid out by
:func:`layout_sheet` in millimetres), and the colour chart that calibrates a printer (:func:`calibrate_printer`, from a
photograph of the printed chart).

Submodules load on first use; the PDF needs the ``print`` extra (fpdf2 and OpenCV).
"""

from __future__ import annotations

from patchscope import lazy_exports

_EXPORTS = {
    "PAPERS": "sheet",
    "ColourChart": "sheet",
    "Rect": "sheet",
    "Ruler": "sheet",
    "SheetLayout": "sheet",
    "layout_sheet": "sheet",
    "parse_length": "sheet",
    "printed_width": "sheet",
    "PrintedSheet": "printing",
    "print_sheet": "printing",
    "write_sheet_pdf": "pdf",
    "Calibration": "calibrate",
    "calibrate_printer": "calibrate",
    "render_chart": "calibrate",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
