"""How every command prints its result: a table or short summary that fits the terminal, or ``--json``.

Tables go through :func:`print_table`, so all commands look alike and fit any width, 80 columns included. No word
is ever cut, so model, run, patch and file names stay whole: each column is at least as wide as its longest word and
the rest wraps between words. Where the columns cannot all fit, the droppable ones go (highest ``drop`` first; a
note under the table names them, and ``--json`` has everything); where even that is too wide, each row prints as a
block of ``column  value`` lines, or each value on its own line under its column's name. Cells are plain text, never
Rich markup, so a name such as ``runs/[a]`` prints as given.

Rich loads inside the functions, so ``--help`` starts fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import typer

from patchscope.formatting import value_text
from patchscope.io import dumps

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

#: spaces between two columns
GAP = 2


@dataclass(frozen=True)
class Col:
    """A table column.

    Args:
        header: its title (wraps between words on a narrow terminal).
        drop: 0 keeps the column at any width; where the table does not fit, columns with ``drop > 0`` are left
            out, the highest first.
        justify: ``left``, or ``right`` for numbers.

    >>> Col("seed", drop=2)
    Col(header='seed', drop=2, justify='left')
    """

    header: str
    drop: int = 0
    justify: Literal["left", "right"] = "left"


def printing() -> bool:
    """Whether this process prints results: the only one, or rank 0 under torchrun (the others stay quiet)."""
    return int(os.environ.get("RANK", "0")) == 0


def console() -> Console:
    """The console results print on: stdout, as wide as the terminal (``$COLUMNS``; 80 when not a terminal);
    quiet on torchrun ranks other than 0."""
    from rich.console import Console

    return Console(highlight=False, emoji=False, quiet=not printing())


def print_json(obj: object, indent: int | None = 2) -> None:
    """``obj`` as JSON on stdout (indented, unless ``indent`` is None: one line); once under torchrun."""
    if printing():
        typer.echo(dumps(obj, indent=indent))


def show(obj: object, as_json: bool, table: Callable[[], None] | None = None) -> None:
    """``obj`` as JSON when asked for (or when there is no table), else the table; once under torchrun."""
    if not printing():
        return
    if as_json or table is None:
        print_json(obj)
    else:
        table()


def print_text(text: str) -> None:
    """A sentence on stdout, wrapped between words at the terminal's width."""
    from rich.text import Text

    console().print(Text(text))


def print_table(
    columns: Sequence[Col | str],
    rows: Sequence[Sequence[str | Text]],
    title: str | None = None,
    caption: str | None = None,
) -> None:
    """One table on stdout, fitted to the terminal's width (see the module's docstring).

    Args:
        columns: the columns (a plain string is a column that always shows).
        rows: one sequence of cells per row, as many as ``columns``: plain text, or Rich ``Text`` for colour.
        title: a line above the table.
        caption: a line under it.

    >>> columns = ["model", Col("accuracy", justify="right")]
    >>> print_table(columns, [["gtsrb-cnn", "99.3%"]])  # doctest: +NORMALIZE_WHITESPACE
    model      accuracy
    ───────────────────
    gtsrb-cnn     99.3%
    """
    out = console()
    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    cells = [[_text(c) for c in row] for row in rows]
    keep = list(range(len(cols)))
    widths = _fit([cols[i].header for i in keep], [[r[i] for i in keep] for r in cells], out.width)
    while widths is None and any(cols[i].drop for i in keep):
        keep.remove(max((i for i in keep if cols[i].drop), key=lambda i: (cols[i].drop, i)))
        widths = _fit([cols[i].header for i in keep], [[r[i] for i in keep] for r in cells], out.width)
    if widths is None:
        _print_blocks(out, cols, cells, title, caption)
        return
    hidden = [c.header for i, c in enumerate(cols) if i not in keep]
    if hidden:
        note = f"not shown at this width: {', '.join(hidden)} (--json has them)"
        caption = f"{caption}\n{note}" if caption else note
    table = _table(show_header=True)
    for i, width in zip(keep, widths):
        table.add_column(cols[i].header, justify=cols[i].justify, width=width, overflow="fold")
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    _print(out, table, title, caption)


def key_value_table(obj: Mapping[str, Any], title: str | None = None) -> None:
    """A nested mapping as a two-column table of dotted keys and values (as :func:`~patchscope.formatting.value_text`
    writes them: rates as percentages).

    >>> key_value_table({"model": "gtsrb-cnn", "patch": {"area": 0.1}})  # doctest: +NORMALIZE_WHITESPACE
    key         value
    ─────────────────────
    model       gtsrb-cnn
    patch.area  10.0%
    """
    from patchscope.runs.store import flatten

    print_table(["key", "value"], [[k, value_text(v, k)] for k, v in flatten(dict(obj)).items()], title)


def _text(value: str | Text) -> Text:
    from rich.text import Text

    return value if isinstance(value, Text) else Text(str(value))


def _longest_word(text: Text) -> int:
    from rich.cells import cell_len

    return max((cell_len(w) for w in text.plain.split()), default=0)


def _widest_line(text: Text) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.plain.splitlines()), default=0)


def _fit(headers: Sequence[str], rows: Sequence[Sequence[Text]], width: int) -> list[int] | None:
    """Each column's width so that the table fits ``width`` without cutting a word, or None where it cannot.

    Every column gets at least its longest word; the widest columns wrap first, all to the same cap, so the narrow
    ones keep their lines whole."""
    from rich.text import Text

    columns = [[Text(h), *(row[j] for row in rows)] for j, h in enumerate(headers)]
    low = [max(map(_longest_word, col)) for col in columns]
    high = [max(max(map(_widest_line, col)), lo) for col, lo in zip(columns, low)]
    room = width - GAP * (len(headers) - 1)
    if sum(low) > room:
        return None

    def capped(cap: int) -> list[int]:
        return [min(hi, max(lo, cap)) for lo, hi in zip(low, high)]

    cap_lo, cap_hi = 0, max(high)  # the largest cap that fits: capped(cap_lo) always fits
    while cap_lo < cap_hi:
        cap = (cap_lo + cap_hi + 1) // 2
        cap_lo, cap_hi = (cap, cap_hi) if sum(capped(cap)) <= room else (cap_lo, cap - 1)
    return capped(cap_lo)


def _table(show_header: bool) -> Table:
    from rich import box
    from rich.table import Table

    return Table(
        box=box.SIMPLE_HEAD,
        show_header=show_header,
        show_edge=False,
        pad_edge=False,
        padding=(0, GAP - 1, 0, 0),
        header_style="bold",
    )


def _print_blocks(
    out: Console, cols: list[Col], cells: list[list[Text]], title: str | None, caption: str | None
) -> None:
    """The layout of last resort, for tables too wide to fit: each row as a block of ``column  value`` lines (a
    two-column table: ``key  value``), and where even that is too wide, each value on its own line under its label."""
    from rich.padding import Padding
    from rich.text import Text

    if len(cols) == 2:
        blocks = [[(row[0], row[1])] for row in cells]
    else:
        blocks = [[(Text(c.header, style="bold"), value) for c, value in zip(cols, row)] for row in cells]
    widths = _fit(["", ""], [list(pair) for block in blocks for pair in block], out.width)
    if title:
        out.print(Text(title, style="bold"))
    if widths is not None:
        table = _table(show_header=False)
        for width in widths:
            table.add_column(width=width, overflow="fold")
        for block in blocks:
            for label, value in block:
                table.add_row(label, value)
            if len(cols) > 2:
                table.add_section()
        out.print(table)
    else:
        for i, block in enumerate(blocks):
            if i and len(cols) > 2:
                out.print()
            for label, value in block:
                out.print(label)
                out.print(Padding(value, (0, 0, 0, 2)))
    if caption:
        out.print(Text(caption, style="dim"))


def _print(out: Console, table: Table, title: str | None, caption: str | None) -> None:
    from rich.text import Text

    if title:
        out.print(Text(title, style="bold"))
    out.print(table)
    if caption:
        out.print(Text(caption, style="dim"))
