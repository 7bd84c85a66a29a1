"""``patchscope leaderboard``: robustness cards side by side on one self-contained HTML page.

Each card (the JSON ``patchscope bench`` writes, :mod:`~patchscope.workflows.bench_card`) becomes a row: the model,
its defense or certifier, its clean accuracy, its robust (and certified) accuracy at every patch share, and its
self-check flags. Rows are ranked only against rows measured the same way: a *group* is one protocol version, one
profile and one data set (the same images, by their hash); a page may hold several groups, each ranked on its own,
never mixed. Within a group rows are ranked by robust accuracy at the headline share (:data:`HEADLINE_SHARE`, 5% of
the image: the worst patch any attack of the cascade found for each image), best first.

The page (``DIR/leaderboard.html``) embeds its figures (robust accuracy against patch share, one line per row,
certified dashed; clean against robust accuracy) and its script (click a column's header to sort by it); it links
each row to a copy of its card in ``DIR/cards/``, so the folder can be moved or published as it is.

>>> import tempfile
>>> from patchscope.workflows.bench_card import *
>>> def card(name, robust):
...     share = ShareResult(0.05, 7, 49 / 1024, 4, 1.0, robust, None, 4, round(4 * robust), None, ())
...     return RobustnessCard(
...         ProtocolInfo("v1", "quick", 0, (0.05,), {}),
...         ModelIdentity(name, "0123456789abcdef", "cnn", 43, 32, {}),
...         DataIdentity("demo", "demo", "fedcba9876543210", 4, 32, "round-robin"),
...         Results((share,)), RunInfo(1.0, "2026-01-01T00:00:00+00:00", {}, {}), "patchscope bench ...")
>>> folder = Path(tempfile.mkdtemp())
>>> for name, robust in [("a", 0.25), ("b", 0.75)]:
...     card(name, robust).save(folder / f"{name}.json")
>>> page = write_leaderboard([folder / "a.json", folder / "b.json"], folder / "board")
>>> [row.model for row in page.board.rows], page.page.name, sorted(p.name for p in (folder / "board/cards").iterdir())
(['b', 'a'], 'leaderboard.html', ['a.json', 'b.json'])
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from patchscope.errors import PatchscopeError
from patchscope.formatting import pct
from patchscope.io import atomic_path, check_output
from patchscope.workflows.bench_card import SCHEMA_NAME, SCHEMA_VERSION, Flag, RobustnessCard, validate_card

#: the share the rows are ranked by (and the scatter plots): 5% of the image, a 7 x 7 patch on 32 px
HEADLINE_SHARE = 0.05
#: the page's file name inside the output folder
PAGE = "leaderboard.html"
#: the folder, inside the output folder, that holds the copies of the cards the page links to
CARDS = "cards"
#: profiles in the order the page shows their groups (the one to compare first)
PROFILE_ORDER = ("standard", "quick")


@dataclass(frozen=True)
class BoardRow:
    """One card as a row of the board.

    Attributes:
        model: the model as the card names it (a zoo name or a checkpoint path).
        defense: the empirical defense around it (None: none).
        certifier: the certifier (None: none).
        data: the data set's name; ``data_hash`` the hash of the measured images; ``images`` how many.
        profile: the protocol's profile (``quick`` or ``standard``).
        protocol: the protocol's version (``v1``).
        clean: clean accuracy (at the headline share; a certifier's defended prediction may depend on the share).
        robust: robust accuracy by share: under the worst patch any attack found for each image.
        certified: certified accuracy by share (empty without a certifier).
        headline: robust accuracy at the board's headline share (None: the card did not measure it).
        flags: the card's self-check warnings.
        reproduce: the command that measures the card again.
        card: the card file as given.
        link: its copy's path relative to the page (``cards/NAME.json``).
    """

    model: str
    defense: str | None
    certifier: str | None
    data: str
    data_hash: str
    images: int
    profile: str
    protocol: str
    clean: float
    robust: dict[float, float]
    certified: dict[float, float]
    headline: float | None
    flags: tuple[Flag, ...]
    reproduce: str
    card: Path
    link: str

    @property
    def label(self) -> str:
        """The row's name in figures: the model's (a checkpoint's file name), with its defense or certifier."""
        name = Path(self.model).name if "/" in self.model else self.model
        return (
            name + (f" + {self.defense}" if self.defense else "") + (f" / {self.certifier}" if self.certifier else "")
        )

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON values (shares as strings: JSON keys are strings)."""
        return {
            "model": self.model,
            "defense": self.defense,
            "certifier": self.certifier,
            "data": self.data,
            "data_hash": self.data_hash,
            "images": self.images,
            "profile": self.profile,
            "protocol": self.protocol,
            "clean": self.clean,
            "headline": self.headline,
            "robust": {f"{s:g}": v for s, v in self.robust.items()},
            "certified": {f"{s:g}": v for s, v in self.certified.items()},
            "flags": [{"code": f.code, "share": f.share, "message": f.message} for f in self.flags],
            "reproduce": self.reproduce,
            "card": str(self.card),
            "link": self.link,
        }


@dataclass(frozen=True)
class BoardGroup:
    """Rows measured the same way (one protocol version, profile and data set), ranked together, best first.

    Attributes:
        protocol: the protocol's version.
        profile: the profile.
        data: the data set's name; ``data_hash`` the hash of its measured images.
        shares: every share any of its rows measured, smallest first.
        rows: best first: by robust accuracy at the headline share, then clean accuracy, then name (a row that did
            not measure the headline share last).
    """

    protocol: str
    profile: str
    data: str
    data_hash: str
    shares: tuple[float, ...]
    rows: tuple[BoardRow, ...]

    @property
    def title(self) -> str:
        return f"protocol {self.protocol}, profile {self.profile}, data {self.data} ({self.data_hash})"

    @property
    def certifies(self) -> bool:
        """Whether any row has certified accuracies (the page then shows their columns)."""
        return any(r.certified for r in self.rows)


@dataclass(frozen=True)
class Leaderboard:
    """Cards ranked in groups that may be compared (see :class:`BoardGroup`).

    Attributes:
        headline_share: the share rows are ranked by.
        groups: standard profile before quick, newer protocol versions first, then by data name.
    """

    headline_share: float
    groups: tuple[BoardGroup, ...]

    @property
    def rows(self) -> tuple[BoardRow, ...]:
        """Every row, group after group, each group best first."""
        return tuple(r for g in self.groups for r in g.rows)

    def as_dict(self) -> dict[str, Any]:
        """The board as JSON values: the headline share and each group with its rows."""
        return {
            "headline_share": self.headline_share,
            "groups": [
                {
                    "protocol": g.protocol,
                    "profile": g.profile,
                    "data": g.data,
                    "data_hash": g.data_hash,
                    "shares": list(g.shares),
                    "rows": [r.as_dict() for r in g.rows],
                }
                for g in self.groups
            ],
        }


@dataclass(frozen=True)
class LeaderboardPage:
    """What :func:`write_leaderboard` made: the board and its page (``DIR/leaderboard.html``)."""

    board: Leaderboard
    page: Path


def read_card(path: Path) -> RobustnessCard:
    """The card in ``path``, checked against the card's JSON Schema; anything else is one line naming the file (a
    missing or unreadable file, broken JSON, a file of another schema or version, a card the schema refuses)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        raise PatchscopeError(f"card {path}: no such file") from None
    except IsADirectoryError:
        raise PatchscopeError(f"card {path}: a folder, not a card file") from None
    except OSError as e:
        raise PatchscopeError(f"card {path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise PatchscopeError(f"card {path}: not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise PatchscopeError(f"card {path}: not JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise PatchscopeError(f"card {path}: not a robustness card (JSON {type(data).__name__}, not an object)")
    if data.get("schema") != SCHEMA_NAME or data.get("version") != SCHEMA_VERSION:
        raise PatchscopeError(
            f"card {path}: schema {data.get('schema')!r} version {data.get('version')!r}; this patchscope reads "
            f"{SCHEMA_NAME} version {SCHEMA_VERSION} cards"
        )
    try:
        validate_card(data)
    except PatchscopeError as e:
        raise PatchscopeError(f"card {path}: {e}") from None
    return RobustnessCard.from_dict(data)


def load_cards(paths: Iterable[str | Path]) -> list[tuple[Path, RobustnessCard]]:
    """Each card file with its card (see :func:`read_card`), in the order given; a file given twice is read once.

    Raises:
        PatchscopeError: one line naming the first file that is not a valid card, or none given.
    """
    seen: dict[Path, Path] = {}
    for p in map(Path, paths):
        seen.setdefault(p.resolve(), p)
    if not seen:
        raise PatchscopeError("no cards given: name the card files `patchscope bench` wrote")
    return [(p, read_card(p)) for p in seen.values()]


def build_leaderboard(
    cards: Sequence[tuple[Path, RobustnessCard]], headline_share: float = HEADLINE_SHARE
) -> Leaderboard:
    """Rank ``cards`` (file and card pairs, :func:`load_cards`) in groups measured the same way.

    Args:
        cards: (card file, card) pairs; the file names the copies in ``cards/`` (made unique).
        headline_share: rows are ranked by their robust accuracy at this share.

    Returns:
        The :class:`Leaderboard`: one :class:`BoardGroup` per (protocol version, profile, data), rows best first.
    """
    links = _link_names([path for path, _ in cards])
    keyed: dict[tuple[str, str, str, str], list[BoardRow]] = {}
    for (path, card), link in zip(cards, links):
        row = _row(card, path, link, headline_share)
        keyed.setdefault((row.protocol, row.profile, row.data, row.data_hash), []).append(row)
    groups = [
        BoardGroup(*key, tuple(sorted({s for r in members for s in r.robust})), tuple(sorted(members, key=_rank_key)))
        for key, members in keyed.items()
    ]
    return Leaderboard(headline_share, tuple(sorted(groups, key=_group_key)))


def _row(card: RobustnessCard, path: Path, link: str, headline_share: float) -> BoardRow:
    shares = {s.share: s for s in card.results.shares}
    head = shares.get(headline_share)
    return BoardRow(
        model=card.model.name,
        defense=card.model.defense,
        certifier=card.model.certifier,
        data=card.data.name,
        data_hash=card.data.hash,
        images=card.data.images,
        profile=card.protocol.profile,
        protocol=card.protocol.version,
        clean=(head or card.results.shares[0]).clean,
        robust={s: r.robust for s, r in sorted(shares.items())},
        certified={s: r.certified for s, r in sorted(shares.items()) if r.certified is not None},
        headline=None if head is None else head.robust,
        flags=card.results.flags,
        reproduce=card.reproduce,
        card=path,
        link=link,
    )


def _rank_key(row: BoardRow) -> tuple[bool, float, float, str]:
    return (row.headline is None, -(row.headline or 0.0), -row.clean, row.label)


def _group_key(group: BoardGroup) -> tuple[int, int, str, str]:
    profile = PROFILE_ORDER.index(group.profile) if group.profile in PROFILE_ORDER else len(PROFILE_ORDER)
    version = int(group.protocol[1:]) if group.protocol[1:].isdigit() else 0
    return (-version, profile, group.data, group.data_hash)


def _link_names(paths: Sequence[Path]) -> list[str]:
    """``cards/NAME.json`` for each card file: its own name, made unique with ``-2``, ``-3``, ... where two share it."""
    used: set[str] = set()
    links = []
    for path in paths:
        stem, n = path.stem, 1
        name = f"{stem}.json"
        while name in used:
            n += 1
            name = f"{stem}-{n}.json"
        used.add(name)
        links.append(f"{CARDS}/{name}")
    return links


def check_board_out(out: Path, links: Iterable[str] = ()) -> None:
    """Refuse, before any work, an output folder the page cannot go in (see :func:`patchscope.io.check_output`):
    also where ``cards`` there is not a folder, or one of the card copies ``links`` (``cards/NAME.json``) is."""
    check_output(out, (PAGE,))
    cards = out / CARDS
    if cards.is_symlink() and not cards.exists():
        raise PatchscopeError(f"out {out}: {CARDS} there is a link to nothing; remove it", params=("out",))
    if cards.exists() and not cards.is_dir():
        raise PatchscopeError(f"out {out}: {CARDS} there is a file, not a folder", params=("out",))
    check_output(cards, tuple(Path(link).name for link in links))


def write_leaderboard(
    cards: Iterable[str | Path], out: str | Path, headline_share: float = HEADLINE_SHARE
) -> LeaderboardPage:
    """Load the card files ``cards``, rank them and write the page ``out/leaderboard.html`` with copies of the cards
    in ``out/cards/``; a card that is not valid is refused before anything is written.

    Args:
        cards: robustness card files (JSON, as ``patchscope bench`` writes them).
        out: the output folder (made if missing).
        headline_share: rows are ranked by their robust accuracy at this patch share.

    Returns:
        The board and the page's path (:class:`LeaderboardPage`).
    """
    out = Path(out)
    check_board_out(out)
    board = build_leaderboard(load_cards(cards), headline_share)
    return LeaderboardPage(board, render_leaderboard(board, out))


def render_leaderboard(board: Leaderboard, out: str | Path) -> Path:
    """Write ``out/leaderboard.html`` (figures and script inline: no other file, no network) and the copies of the
    cards its rows link to (``out/cards/``); return the page's path."""
    import jinja2

    import patchscope

    out = Path(out)
    check_board_out(out, [r.link for r in board.rows])
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("patchscope.runs", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    html = env.get_template("leaderboard.html.j2").render(
        headline=_share_text(board.headline_share),
        groups=[_group_view(g, i, board.headline_share) for i, g in enumerate(board.groups)],
        cards=len(board.rows),
        version=patchscope.__version__,
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    for row in board.rows:
        _copy_card(row.card, out / row.link)
    path = out / PAGE
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path


def _copy_card(source: Path, dest: Path) -> None:
    """Copy the card file as it is (byte for byte), unless ``dest`` is that file already."""
    if dest.exists() and dest.resolve() == source.resolve():
        return
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)


#: line and point colours, one per row of a group (matplotlib's tab10), in the table as a swatch too
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: markers, changed once the colours have all been used
MARKERS = ("o", "s", "^", "D", "v")


def _style(i: int) -> tuple[str, str]:
    return COLORS[i % len(COLORS)], MARKERS[(i // len(COLORS)) % len(MARKERS)]


def _share_text(share: float) -> str:
    """A share as a percentage of the image: ``5%``, ``0.5%``."""
    return f"{100 * share:g}%"


def _group_view(group: BoardGroup, index: int, headline: float) -> dict[str, Any]:
    """What the template shows of one group: its share columns (and which one ranks), rows (cells with the values
    they sort by), figures and commands. Columns are numbered as the rows' cells: #, model, defense, clean, robust
    at each share, certified at each share (only where a row certifies), flags, card."""
    shares = [{"text": _share_text(s), "headline": s == headline} for s in group.shares]
    ranked = next((i for i, s in enumerate(group.shares) if s == headline), None)
    sets = 2 if group.certifies else 1
    return {
        "id": f"group-{index + 1}",
        "title": group.title,
        "protocol": group.protocol,
        "profile": group.profile,
        "data": group.data,
        "shares": shares,
        "certifies": group.certifies,
        "flags_col": 4 + sets * len(shares),
        "sorted_by": 3 if ranked is None else 4 + ranked,
        "rows": [_row_view(r, i, group, headline) for i, r in enumerate(group.rows)],
        "figures": [
            {"src": _png(share_figure(group)), "caption": "robust accuracy against patch share; certified dashed"},
            {
                "src": _png(scatter_figure(group, headline)),
                "caption": f"clean against robust accuracy at {_share_text(headline)}",
            },
        ],
    }


def _row_view(row: BoardRow, i: int, group: BoardGroup, headline: float) -> dict[str, Any]:
    def rate(value: float | None, share: float | None = None) -> dict[str, Any]:
        return {"text": pct(value), "value": "" if value is None else f"{value:.6f}", "headline": share == headline}

    guard = f"defense {row.defense}" if row.defense else f"certifier {row.certifier}" if row.certifier else "-"
    cells = [rate(row.clean)] + [rate(row.robust.get(s), s) for s in group.shares]
    if group.certifies:
        cells += [rate(row.certified.get(s)) for s in group.shares]
    return {
        "rank": i + 1,
        "model": row.model,
        "label": row.label,
        "guard": guard,
        "color": _style(i)[0],
        "cells": cells,
        "flags": _flags_view(row.flags),
        "flag_count": len(row.flags),
        "href": quote(row.link),
        "link": Path(row.link).name,
        "reproduce": row.reproduce,
        "images": row.images,
    }


def _flags_view(flags: Sequence[Flag]) -> list[dict[str, str]]:
    """One badge per flag code, naming the shares it was raised at; its messages as the badge's tooltip."""
    codes: dict[str, list[Flag]] = {}
    for flag in flags:
        codes.setdefault(flag.code, []).append(flag)
    return [
        {
            "code": code,
            "where": ", ".join(_share_text(f.share) for f in found if f.share is not None),
            "message": "\n".join(f.message for f in found),
        }
        for code, found in codes.items()
    ]


def _png(fig: Any) -> str:
    """A matplotlib figure as a ``data:`` URI (PNG), so the page needs no other file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def share_figure(group: BoardGroup) -> Any:
    """Robust accuracy against patch share, one line per row (certified accuracy dashed, in the row's colour).

    Returns:
        A :class:`matplotlib.figure.Figure` (not drawn on screen: save it or embed it).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    for i, row in enumerate(group.rows):
        color, marker = _style(i)
        xs = [100 * s for s in row.robust]
        ax.plot(xs, list(row.robust.values()), marker=marker, color=color, label=row.label)
        if row.certified:
            cx = [100 * s for s in row.certified]
            ax.plot(cx, list(row.certified.values()), marker=marker, color=color, linestyle="--", alpha=0.8)
    ticks = [100 * s for s in group.shares]
    ax.set_xscale("log")
    ax.set_xticks(ticks, [_share_text(s) for s in group.shares])
    ax.minorticks_off()
    ax.set_xlabel("patch share of the image")
    ax.set_ylabel("accuracy (robust solid, certified dashed)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(3, max(1, len(group.rows))), fontsize=8, frameon=False)
    return fig


def scatter_figure(group: BoardGroup, headline: float) -> Any:
    """Clean accuracy against robust accuracy at the ``headline`` share, one point per row (rows that did not
    measure it left out); the diagonal is robust equal to clean.

    Returns:
        A :class:`matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    points: dict[tuple[float, float], list[str]] = {}
    for i, row in enumerate(group.rows):
        if row.headline is not None:
            color, marker = _style(i)
            ax.scatter([row.clean], [row.headline], color=color, marker=marker, s=50, zorder=3)
            points.setdefault((row.clean, row.headline), []).append(row.label)
    for (x, y), labels in points.items():  # rows on the same point share one label, on the side with room
        right = x > 0.6
        ax.annotate(
            ", ".join(labels), (x, y), textcoords="offset points", xytext=(-6 if right else 6, 5), fontsize=7,
            ha="right" if right else "left",
        )  # fmt: skip
    ax.set_xlabel("clean accuracy")
    ax.set_ylabel(f"robust accuracy at {_share_text(headline)}")
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    return fig
