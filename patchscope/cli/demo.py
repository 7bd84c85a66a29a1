"""`patchscope demo`: the whole story on the bundled models and data, as one HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patchscope.cli.common import DeviceOpt, JsonOpt, check_out, recorded, resolve_device
from patchscope.cli.output import print_json
from patchscope.validate import check_fraction, check_positive

app = typer.Typer()


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="report folder")] = Path("demo-report"),
    steps: Annotated[int, typer.Option(help="attack steps")] = 150,
    size: Annotated[float, typer.Option(help="patch area fraction")] = 0.08,
    quick: Annotated[bool, typer.Option(help="a tiny budget that only checks every stage runs")] = False,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """The whole story on the bundled models and data, as one report.

    Attack, measure, explain, defend and certify, then write the HTML report."""
    from dataclasses import replace

    from patchscope.recipe import flat_settings
    from patchscope.workflows.demo import DemoSettings, demo_metrics, quick_settings, run_demo

    check_out(out, "results.json", "report.html", "curves.png", "transfer.png")
    dev = resolve_device(device)
    check_fraction("size", size)
    check_positive("steps", steps, 10**6)
    recipe = replace(DemoSettings().recipe, steps=steps)
    settings = quick_settings(dev) if quick else DemoSettings(size=size, recipe=recipe, device=dev)
    with recorded("demo", {"out": str(out), **flat_settings(settings)}) as run:
        path = run_demo(out, settings)
        run.log(demo_metrics(json.loads((out / "results.json").read_text())))
        run.artifact("report", path)
    if as_json:
        print_json({"report": str(path.resolve()), "results": str((out / "results.json").resolve())})
    else:
        typer.echo(f"report: {path.resolve()}")
