"""`patchscope calibrate`: a printer's colours from a photograph of its printed sheet, for `attack --printer`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patchscope.cli.common import JsonOpt
from patchscope.cli.output import print_json

app = typer.Typer()


@app.command()
def calibrate(
    photo: Annotated[
        Path, typer.Argument(help="a photograph of the printed sheet's colour chart, all four markers in view")
    ],
    sheet: Annotated[Path, typer.Option(help="the sheet's record (the .json `patchscope print` wrote beside the PDF)")],
    out: Annotated[Path, typer.Option(help="the printer file to write (JSON), for attack --printer")] = Path(
        "printer.json"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Fit a printer's colours from a photo of its printed chart.

    Finds the chart's ArUco markers, rectifies it, reads each colour cell and fits an affine colour transform from
    the intended to the observed colours. Needs OpenCV (the calibrate extra)."""
    from patchscope.street.calibrate import calibrate_printer

    result = calibrate_printer(photo, sheet, out)
    if as_json:
        print_json(result.as_dict())
        return
    p = result.printer
    typer.echo(
        f"{result.out}: {len(p.observed)} colours read; before the transform they were off by {result.mean_error:.3f} "
        f"on average (RGB in 0..1), after it by {p.rms:.3f} (rms)"
    )
    for row in p.matrix:
        typer.echo("  " + "  ".join(f"{v:+.3f}" for v in row))
