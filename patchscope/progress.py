"""Progress on stderr, shared by every long loop: a rich bar at a terminal, a plain line now and then in a log.

Example (in a log, with a clock that moves 20 s a step, a line every 30 s):
    >>> import io, itertools
    >>> ticks, out = itertools.count(0, 20), io.StringIO()
    >>> with progress_bar(4, "demo", interval=30, stream=out, clock=lambda: float(next(ticks))) as update:
    ...     for _ in range(4):
    ...         update(loss=0.5)
    >>> print(out.getvalue(), end="")
    demo: 2/4 (50%), 40s elapsed, ~40s left; loss 0.5
    demo: 4/4 (100%), 1m20s elapsed, ~0s left; loss 0.5
    demo: done, 4/4 in 1m40s
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from patchscope.errors import raise_if_interrupted

Update = Callable[..., None]
LOG_INTERVAL_S = 30.0  # seconds between plain lines in a log; PATCHSCOPE_PROGRESS_SECONDS overrides


def _fields(fields: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


def _duration(seconds: float) -> str:
    """``_duration(4000) == '1h06m40s'``: hours and minutes only where they are not zero."""
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LogLines:
    """``update(advance=1, **fields)`` for logs and pipes: one plain line at most every ``interval`` seconds.

    Short loops print nothing; a loop that printed at all ends with a ``done`` line (``close``)."""

    def __init__(
        self, total: int, description: str, interval: float, stream: TextIO, clock: Callable[[], float]
    ) -> None:
        self.total, self.description, self.interval, self.stream, self.clock = (
            total,
            description,
            interval,
            stream,
            clock,
        )
        self.start = self.last = clock()
        self.done, self.fields, self.printed = 0, "", False

    def __call__(self, advance: int = 1, **fields: Any) -> None:
        raise_if_interrupted()
        self.done += advance
        self.fields = _fields(fields) if fields else self.fields
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last, elapsed = now, now - self.start
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = f", ~{_duration(elapsed * (self.total - self.done) / self.done)} left" if self.done else ""
        tail = f"; {self.fields}" if self.fields else ""
        self._write(f"{self.description}: {self.done}/{self.total}{share}, {_duration(elapsed)} elapsed{eta}{tail}")

    def close(self) -> None:
        if self.printed:
            self._write(f"{self.description}: done, {self.done}/{self.total} in {_duration(self.clock() - self.start)}")

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self.printed = True


@contextlib.contextmanager
def progress_bar(
    total: int,
    description: str,
    enabled: bool = True,
    *,
    interval: float | None = None,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Update]:
    """Yield ``update(advance=1, **fields)``; fields (loss=..., acc=...) are shown after the bar.

    At a terminal: a rich bar. Elsewhere (``nohup ... > log``, pipes, tests' captured output): a plain line at
    most every ``interval`` seconds (default 30, or ``$PATCHSCOPE_PROGRESS_SECONDS``), so a long job's log
    shows that it runs and how long it has left while a short one prints nothing."""
    if not enabled:
        yield lambda advance=1, **fields: raise_if_interrupted()
        return
    console = Console(stderr=True) if stream is None else None  # a given stream is a log, never a terminal
    if console is None or not console.is_terminal:
        every = (
            interval if interval is not None else float(os.environ.get("PATCHSCOPE_PROGRESS_SECONDS", LOG_INTERVAL_S))
        )
        lines = LogLines(total, description, every, stream or sys.stderr, clock)
        yield lines
        lines.close()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, info="")

        def update(advance: int = 1, **fields: Any) -> None:
            raise_if_interrupted()
            if fields:
                bar.update(task, advance=advance, info=_fields(fields))
            else:
                bar.update(task, advance=advance)

        yield update
