"""Progress bars on stderr (rich), shared by every long loop; silent when disabled."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Update = Callable[..., None]


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Update]:
    """Yield ``update(advance=1, **fields)``; fields (loss=..., acc=...) are shown after the bar.

    Drawn only when stderr is a terminal (never in logs, pipes or tests' captured output)."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:  # bars are for people at a terminal, not for logs and pipes
        yield lambda advance=1, **fields: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, info="")

        def update(advance: int = 1, **fields: Any) -> None:
            info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            bar.update(task, advance=advance, **({"info": info} if fields else {}))

        yield update
