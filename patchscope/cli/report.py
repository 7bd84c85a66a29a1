"""`patchscope report`: one HTML page from stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patchscope.cli.common import StoreOpt, check_out, split_names, store_path

app = typer.Typer()


@app.command()
def report(
    runs: Annotated[str, typer.Option(help="comma-separated run ids from `patchscope runs list`")],
    out: Annotated[Path, typer.Option(help="report folder")] = Path("report"),
    store: StoreOpt = None,
) -> None:
    """One self-contained HTML page from stored runs: their settings, metrics and figures."""
    from patchscope.eval.report import runs_report
    from patchscope.eval.store import store_for

    check_out(out)
    db = store_for(store_path(store))
    path = runs_report([db.get(r) for r in split_names(runs, "--runs")], out)
    typer.echo(f"report: {path.resolve()}")
