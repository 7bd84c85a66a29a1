"""Run the command line in this process, exactly as ``patchscope`` runs (through :func:`patchscope.cli.main`), and
check the error contract: exit 0, or exit 2 (130/143 on interrupts) with one line on stderr and no traceback."""

from __future__ import annotations

import io
import json
import math
import signal
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def invoke(*args: str) -> Result:
    """``patchscope ARGS`` in-process: exit status, stdout, stderr (signal handlers and warning filters restored)."""
    from patchscope.cli import main

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv, out, err = sys.argv, io.StringIO(), io.StringIO()
    sys.argv = ["patchscope", *args]
    code = 0
    try:
        with warnings.catch_warnings(), redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # noqa: BLE001  anything escaping main breaks the contract: report it as a traceback
                import traceback

                err.write("Traceback (escaped main)\n" + "".join(traceback.format_exception(e)))
                code = -1
    finally:
        sys.argv = argv
        for s, h in handlers.items():
            signal.signal(s, h)
    return Result(code, out.getvalue(), err.getvalue())


def _finite_json(text: str) -> bool:
    """No bare NaN/Infinity anywhere in JSON output (json.loads accepts them; strict JSON does not)."""

    def refuse(token: str) -> float:
        raise ValueError(token)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


def assert_contract(r: Result, args: tuple[str, ...] = ()) -> None:
    """Exit 0 (JSON output, if any, strict), or 2/130/143 with exactly one stderr line and no traceback."""
    where = f"patchscope {' '.join(args)}"
    assert "Traceback" not in r.err and "Traceback" not in r.out, f"{where}\n{r.err[-3000:]}"
    if r.code == 0:
        text = r.out.strip()
        if text.startswith(("{", "[")):
            assert _finite_json(text), f"{where}: NaN or inf in JSON output\n{text[:500]}"
        return
    assert r.code in (2, 130, 143), f"{where}: exit {r.code}\n{r.err[-2000:]}"
    lines = [
        line
        for line in r.err_lines
        if not line.startswith("patchscope: warning:") and not line.startswith("patchscope: note:")
    ]
    assert len(lines) == 1, f"{where}: {len(lines)} stderr lines\n{r.err[-2000:]}"
    assert lines[0].startswith("patchscope: "), f"{where}: {lines[0]}"


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
