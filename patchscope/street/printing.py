"""`print_sheet`: a patch's print-ready page (PDF) and, beside it, the sheet's record (JSON) that calibration reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchscope.attacks.load import load_patch
from patchscope.attacks.patch import Patch, patch_zoo_dir
from patchscope.errors import PatchscopeError
from patchscope.formatting import pct
from patchscope.io import check_output, check_path_names, write_json
from patchscope.street.sheet import SheetLayout, layout_sheet, printed_width

#: the ``format`` of a sheet's record
SHEET_FORMAT = "patchscope-sheet/1"


@dataclass(frozen=True)
class PrintedSheet:
    """What :func:`print_sheet` wrote: the ``pdf``, the ``record`` beside it (the layout, for calibration), the
    patch's name and the SHA-256 of its file, and the ``layout``."""

    pdf: Path
    record: Path
    patch: str
    sha256: str
    layout: SheetLayout

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary: the files, the patch and the sizes it prints at."""
        lay = self.layout
        return {
            "pdf": str(self.pdf),
            "sheet": str(self.record),
            "patch": self.patch,
            "sha256": self.sha256,
            "share": lay.share,
            "sign_width_mm": lay.sign_width_mm,
            "printed_width_mm": lay.patch.w,
            "mm_per_pixel": lay.mm_per_pixel,
            "paper": lay.paper,
            "dpi": lay.dpi,
        }


def patch_file(spec: str | Path) -> Path:
    """The ``patch.safetensors`` a patch spec (``zoo:MODEL/NAME``, a run folder or the file) names."""
    text = str(spec)
    path = patch_zoo_dir() / text[4:] if text.startswith("zoo:") else Path(text)
    return path / "patch.safetensors" if path.is_dir() else path


def identity_lines(name: str, digest: str, patch: Patch, width: float, sign_width_mm: float | None) -> list[str]:
    """The text that says which patch a sheet holds and the size it was printed for."""
    share = patch.side / patch.image_size
    sized = f"for a {sign_width_mm / 10:g} cm sign" if sign_width_mm is not None else "at the width asked for"
    meta = patch.meta
    made = ", ".join(f"{k} {meta[k]}" for k in ("model", "source", "target") if meta.get(k) not in (None, ""))
    return [
        f"patchscope patch {name}   sha256 {digest[:16]}",
        f"{patch.side} x {patch.side} px of a {patch.image_size} px image: {pct(share)} of the sign's width; "
        f"printed {width:.1f} mm wide {sized} ({width / patch.side:.2f} mm a pixel)",
        f"{patch.placement}{' at ' + str(patch.location) if patch.location else ''}{'; ' + made if made else ''}",
        "Print at 100% (no fit to page) and check the ruler: 10 cm must measure 10 cm. Cut along the crop marks.",
    ]


def print_sheet(
    patch: str | Path,
    out: Path,
    *,
    sign_width_mm: float | None = None,
    width_mm: float | None = None,
    paper: str = "a4",
    dpi: int = 300,
) -> PrintedSheet:
    """Write a print-ready page of ``patch`` at its real size to ``out`` (PDF), and its record beside it
    (``out`` with ``.json``: the layout, the chart's colours and markers, the patch's hash).

    Args:
        patch: a run folder, a ``patch.safetensors`` file or ``zoo:MODEL/NAME``.
        out: the PDF to write (its folder is checked before any work).
        sign_width_mm: the real sign's width: the patch prints at its share of it; or
        width_mm: the patch's printed width.
        paper: ``a4``, ``a3`` or ``letter``; dpi: the resolution of the patch's pixel-sharp image.

    Returns:
        A :class:`PrintedSheet`. A patch too large for the paper, or a missing ``print`` extra, raises
        :class:`PatchscopeError` (nothing written).
    """
    from patchscope.street.pdf import require_print_extra, write_sheet_pdf

    out = Path(out)
    record = _check_out(out)
    require_print_extra()
    loaded = load_patch(patch)
    digest = hashlib.sha256(patch_file(patch).read_bytes()).hexdigest()
    width = printed_width(loaded.side, loaded.image_size, sign_width_mm, width_mm)
    lines = identity_lines(str(patch), digest, loaded, width, sign_width_mm)
    layout = layout_sheet(
        loaded.side,
        loaded.image_size,
        sign_width_mm=sign_width_mm,
        width_mm=width_mm,
        paper=paper,
        dpi=dpi,
        lines=lines,
    )
    write_sheet_pdf(layout, loaded.pixels, loaded.mask, out, f"patchscope patch {patch}")
    write_json(record, {"format": SHEET_FORMAT, "patch": str(patch), "sha256": digest, "layout": layout.as_dict()})
    return PrintedSheet(out, record, str(patch), digest, layout)


def _check_out(out: Path) -> Path:
    """The record's path beside the PDF ``out``, once both can be written there."""
    check_path_names(out, "out")
    if out.suffix.lower() == ".json":
        raise PatchscopeError(
            f"out {out}: give the PDF to write, e.g. sheet.pdf (its record goes beside it)", params=("out",)
        )
    if out.is_dir():
        raise PatchscopeError(f"out {out}: a folder; give the PDF to write, e.g. {out / 'sheet.pdf'}", params=("out",))
    record = out.with_suffix(".json")
    check_output(out.parent, (out.name, record.name), "out")
    return record
