"""`patchscope leaderboard`: robustness cards side by side on one self-contained HTML page.

Writes OUT/leaderboard.html and a copy of each card in OUT/cards/ (the page links to them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patchscope.cli.common import JsonOpt
from patchscope.cli.output import print_json
from patchscope.formatting import pct

app = typer.Typer()


@app.command()
def leaderboard(
    cards: Annotated[
        list[Path],
        typer.Argument(metavar="CARD", help="robustness card files (JSON) from `patchscope bench`", show_default=False),
    ],
    out: Annotated[Path, typer.Option(help="folder for leaderboard.html and the cards/ it links to")] = Path(
        "leaderboard"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Robustness cards side by side on one HTML page.

    A sortable table, robust accuracy against patch share, clean against robust accuracy; each row links to a copy
    of its card in OUT/cards/. Only rows of one protocol version, profile and data set are ranked together."""
    from patchscope.workflows.leaderboard import check_board_out, write_leaderboard

    check_board_out(out)
    made = write_leaderboard(cards, out)
    page = made.page.resolve()
    if as_json:
        print_json({"page": str(page)} | made.board.as_dict())
        return
    typer.echo(f"leaderboard: {page}")
    share = f"{100 * made.board.headline_share:g}%"
    for group in made.board.groups:
        best = group.rows[0]
        typer.echo(
            f"  {group.title}: {len(group.rows)} card{'s' if len(group.rows) != 1 else ''}; "
            f"best {best.label}, {pct(best.headline)} robust at {share}"
        )
