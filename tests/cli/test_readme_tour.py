"""The README's five-minute tour, run as written (with a small budget) on a fresh store after the demo's run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from patchscope.models import list_models
from patchscope.runs.store import RunStore
from tests.cli._contract import invoke

README = Path(__file__).resolve().parents[2] / "README.md"
#: the budget the test gives the tour's commands, where they take these options (the README's own is larger)
SMALL = {"--limit": "24", "--steps": "1"}
RECORDED = ("evaluate", "attack", "explain", "defend", "certify", "curve")


def tour() -> list[list[str]]:
    """The tour's commands, in order, as argument lists (continuation lines joined, comments dropped)."""
    section = README.read_text().split("## A five-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the tour has no bash block"
    text = block.group(1).replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in text.splitlines()]
    return [c for c in commands if c]


def small(args: list[str]) -> list[str]:
    """``args`` with :data:`SMALL`'s budget: a given value replaced, a missing one added where the command has it."""
    args = list(args)
    for flag, value in SMALL.items():
        if flag in args:
            args[args.index(flag) + 1] = min(value, args[args.index(flag) + 1], key=int)
        elif args[0] in ("evaluate", "attack", "explain", "defend", "curve") and flag == "--limit":
            args += [flag, value]
    return args


@pytest.mark.skipif(not list_models(), reason="no zoo bundled")
def test_the_tour_runs_as_written_and_its_report_holds_its_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    db = tmp_path / "runs.db"
    monkeypatch.setenv("PATCHSCOPE_STORE", str(db))
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.chdir(tmp_path)
    store = RunStore(db)
    store.finish(store.start("demo", {"out": "demo-report"}), {"targeted_success": 0.5})  # `make demo` came first

    commands = tour()
    assert all(c[0] == "patchscope" for c in commands)
    made = []
    for command in commands:
        args = small(command[1:])
        result = invoke(*args)
        assert result.code == 0, f"{shlex.join(command)}: exit {result.code}\n{result.err[-2000:]}"
        made += [args[0]] if args[0] in RECORDED else []

    runs = store.runs(limit=None)[::-1]
    assert [r.kind for r in runs] == ["demo", *made] and all(r.status == "done" for r in runs)
    page = (tmp_path / "report" / "report.html").read_text()
    reported = re.findall(r"<h2>Run (\d+): (\w+)", page)
    assert reported == [(str(r.id), r.kind) for r in runs[1:]]  # the tour's runs, and not the demo's
