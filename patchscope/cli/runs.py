"""`patchscope runs list | show | compare`: browse the run store (see :mod:`patchscope.runs.store`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patchscope.cli.common import JsonOpt, StoreOpt, store_path
from patchscope.cli.output import Col, print_json, print_table
from patchscope.errors import PatchscopeError

if TYPE_CHECKING:
    from rich.text import Text

    from patchscope.runs.store import Run, RunStore

app = typer.Typer(name="runs", no_args_is_help=True, help="Browse stored runs: list, show, compare.")

_STATUS_STYLE = {"running": "cyan", "done": "green", "failed": "red", "interrupted": "yellow"}


def store_for(path: Path | None) -> RunStore:
    """The run store a command reads: its ``--store PATH``, else the root's ``patchscope --store PATH``, else
    ``$PATCHSCOPE_STORE`` or ``~/.patchscope/runs.db``."""
    from patchscope.runs.store import store_for as _store_for

    return _store_for(store_path(path))


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes}m{s:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _short(value: Any, key: str = "", width: int = 200) -> str:
    """A value as a table cell (:func:`patchscope.formatting.value_text`): text and names whole, longer JSON (lists of
    records, mappings) cut at ``width`` characters."""
    from patchscope.formatting import value_text

    text = value_text(value, key)
    json_like = isinstance(value, dict) or (isinstance(value, list) and text.startswith("["))
    return text if len(text) <= width or not json_like else text[: width - 1] + "…"


def _status(status: str) -> Text:
    from rich.text import Text

    return Text(status, style=_STATUS_STYLE.get(status, "white"))


def _headline(run: Run, n: int = 3) -> str:
    """The run's main results, for the list view."""
    from patchscope.runs.results import headline

    return headline(run.kind, run.metrics, n)


@app.command("list")
def list_runs(
    kind: Annotated[
        str | None, typer.Option("--kind", help="only runs of this kind (train, attack, evaluate, ...)")
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="only runs with this status (running, done, failed, interrupted)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="show at most N runs, newest first (0: all)")] = 20,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """List stored runs, newest first."""
    db = store_for(store)
    if limit < 0:
        raise PatchscopeError(f"--limit must be >= 0 (0: all runs), got {limit}")
    runs = db.runs(kind=kind, limit=limit or None, status=status)
    for rid, why in db.damaged.items():
        typer.echo(f"patchscope: warning: run {rid} in {db.path} is damaged ({why}); skipped", err=True)
    if as_json:
        print_json({"store": str(db.path), "runs": [r.as_dict() for r in runs]})
        return
    if not runs:
        typer.echo(f"no runs{f' of kind {kind}' if kind else ''} in {db.path}")
        return
    columns: list[Col | str] = [
        Col("id", justify="right"),
        "kind",
        "status",
        Col("started", drop=1),
        Col("time", drop=2, justify="right"),
        "models",
        Col("seed", drop=3, justify="right"),
        "metrics",
    ]
    rows: list[list[str | Text]] = [
        [
            str(r.id),
            r.kind,
            _status(r.status),
            _when(r.started),
            _duration(r.seconds),
            ", ".join(r.models) or "-",
            _short(r.seed),
            _headline(r),
        ]
        for r in runs
    ]
    print_table(columns, rows, title=str(db.path))


@app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(metavar="ID", help="run id (see `patchscope runs list`)")],
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """Everything stored about one run.

    Its config, metrics, artifacts and provenance."""
    from patchscope.runs.results import result_rows, setting_rows
    from patchscope.runs.store import flatten

    run = store_for(store).get(run_id)
    if as_json:
        print_json(run.as_dict())
        return
    sections = (
        ("run", _about(run)),
        ("config", dict(setting_rows(run.config))),
        ("metrics", dict(result_rows(run.kind, run.metrics))),
        ("artifacts", {k: _short(v) for k, v in flatten(run.artifacts).items()}),
    )
    typer.echo(f"run {run.id} ({run.kind}, {run.status})")
    for section, entries in sections:
        if entries:
            typer.echo()
            print_table([section, ""], [[k, v] for k, v in entries.items()])


def _about(run: Run) -> dict[str, str | Text]:
    """The run's own fields as table cells."""
    about: dict[str, str | Text] = {
        "status": _status(run.status),
        "started": _when(run.started),
        "ended": _when(run.ended),
        "time": _duration(run.seconds),
        "models": _short(run.models or None),
        "seed": _short(run.seed),
        "data hash": _short(run.data_hash),
        "version": _short(run.version),
        "git commit": _short(run.git_commit),
        "command": _short(run.command),
        "process": _short(f"{run.pid} on {run.host}" if run.pid else None),
    }
    if run.message:
        about["message"] = _short(run.message)
    return about


@app.command("compare")
def compare_runs(
    a: Annotated[str, typer.Argument(metavar="ID_A", help="first run id")],
    b: Annotated[str, typer.Argument(metavar="ID_B", help="second run id")],
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """What differs between two runs.

    Run fields, config and metrics, with b - a for numbers."""
    diff = store_for(store).compare(a, b)
    if as_json:
        print_json(diff)
        return
    sections = [(s, diff[s]) for s in ("run", "config", "metrics") if diff[s]]
    if not sections:
        typer.echo(f"runs {diff['a']} and {diff['b']} have the same config and metrics")
        return
    typer.echo(f"run {diff['a']} vs run {diff['b']}")
    for section, entries in sections:
        rows = []
        for k, e in entries.items():
            missing = e.get("only_in")
            va = "(absent)" if missing == "b" else _short(e["a"], k, 40)
            vb = "(absent)" if missing == "a" else _short(e["b"], k, 40)
            rows.append([k, va, vb, _delta(k, e.get("delta"))])
        typer.echo()
        print_table([section, f"run {diff['a']}", f"run {diff['b']}", Col("b - a", justify="right")], rows)


def _delta(key: str, delta: float | None) -> str:
    """b - a: in percentage points for rates (``+12.5 pts``), else as a signed number."""
    from patchscope.formatting import is_rate

    if delta is None:
        return ""
    return f"{delta * 100:+.1f} pts" if is_rate(key) else f"{delta:+.4g}"
