"""`patchscope print`: a patch's print-ready page at its real size (PDF), with its record for calibration beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patchscope.cli.common import JsonOpt
from patchscope.cli.output import print_json
from patchscope.formatting import pct

app = typer.Typer()


@app.command("print")
def print_patch(
    patch: Annotated[str, typer.Argument(help="a patch folder (from attack), its patch.safetensors or zoo:MODEL/NAME")],
    sign_width: Annotated[
        str | None,
        typer.Option(help="the real sign's width, e.g. 75cm, 750mm or 30in: the patch prints at its share of it"),
    ] = None,
    width: Annotated[str | None, typer.Option(help="the patch's printed width instead, e.g. 16cm")] = None,
    paper: Annotated[str, typer.Option(help="a4 | a3 | letter")] = "a4",
    dpi: Annotated[int, typer.Option(help="resolution of the patch's image; each pixel a sharp block")] = 300,
    out: Annotated[
        Path, typer.Option(help="the PDF to write; its record (layout, colour chart) goes beside it as .json")
    ] = Path("sheet.pdf"),
    as_json: JsonOpt = False,
) -> None:
    """A print-ready page: the patch at its real size.

    Crop marks, a centimetre ruler to check nothing was scaled, the patch's identity and a chart of the printable
    colours framed by ArUco markers (photograph it to calibrate the printer). Needs the print extra."""
    from patchscope.street import parse_length, print_sheet

    sheet = print_sheet(
        patch,
        out,
        sign_width_mm=parse_length(sign_width, "sign_width") if sign_width is not None else None,
        width_mm=parse_length(width, "width") if width is not None else None,
        paper=paper,
        dpi=dpi,
    )
    if as_json:
        print_json(sheet.as_dict())
        return
    lay = sheet.layout
    typer.echo(
        f"{sheet.pdf}: {sheet.patch} printed {lay.patch.w:.1f} mm wide ({lay.mm_per_pixel:.2f} mm a pixel, "
        f"{pct(lay.share)} of the sign), {lay.paper}, {lay.dpi} dpi; print at 100% and check the ruler"
    )
    typer.echo(f"{sheet.record}: the sheet's record (colour chart and markers) for calibration")
