"""`patchscope report`: one HTML page from stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patchscope.cli.common import JsonOpt, StoreOpt, check_out, note, split_names, store_path
from patchscope.cli.output import print_json
from patchscope.errors import PatchscopeError
from patchscope.validate import check_positive

app = typer.Typer()


@app.command()
def report(
    runs: Annotated[str | None, typer.Option(help="comma-separated run ids from `patchscope runs list`")] = None,
    last: Annotated[
        int | None, typer.Option(help="the N newest runs instead, oldest first (--last 3: the last three commands)")
    ] = None,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("report"),
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One self-contained HTML page from stored runs.

    Each run's results, settings and figures, and the command that made it."""
    from patchscope.runs.report import runs_report
    from patchscope.runs.store import store_for

    if (runs is None) == (last is None):
        raise PatchscopeError("give the runs to report: --runs 3,4 (ids from `patchscope runs list`) or --last N")
    check_out(out, "report.html")
    db = store_for(store_path(store))
    if last is not None:
        chosen = db.runs(limit=check_positive("last", last))[::-1]
        if not chosen:
            raise PatchscopeError(f"--last {last}: there are no runs in {db.path}")
    else:
        chosen = [db.get(r) for r in split_names(runs or "", "--runs")]
    for run in chosen:
        for name, where in (run.artifacts or {}).items():
            if not Path(str(where)).exists():
                note(
                    f"note: run {run.id}'s {name} {where} is not there (moved, deleted, or stored relative to another "
                    "working folder); the report leaves its figures out"
                )
    path = runs_report(chosen, out)
    if as_json:
        print_json({"report": str(path.resolve()), "runs": [r.id for r in chosen]})
    else:
        typer.echo(f"report: {path.resolve()}")
