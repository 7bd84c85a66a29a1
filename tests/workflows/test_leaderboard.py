"""The leaderboard: cards ranked by robust accuracy within groups measured alike, one self-contained page whose rows
link to copies of their cards, and a bad card refused in one line that names its file."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from patchscope.errors import PatchscopeError
from patchscope.workflows.bench_card import (
    DataIdentity,
    Flag,
    ModelIdentity,
    ProtocolInfo,
    Results,
    RobustnessCard,
    RunInfo,
    ShareResult,
)
from patchscope.workflows.leaderboard import (
    CARDS,
    PAGE,
    build_leaderboard,
    load_cards,
    share_figure,
    write_leaderboard,
)
from tests.cli._contract import invoke

SHARES = (0.01, 0.02, 0.05, 0.1)


def make_card(
    model: str,
    robust: tuple[float, ...],
    clean: float = 0.9,
    profile: str = "quick",
    protocol: str = "v1",
    defense: str | None = None,
    certifier: str | None = None,
    flags: tuple[Flag, ...] = (),
    images: int = 16,
) -> RobustnessCard:
    """A hand-built card: ``robust`` at each of :data:`SHARES`; a certifier certifies half its robust accuracy."""
    shares = []
    for share, r in zip(SHARES, robust):
        cert = None if certifier is None else r / 2
        side = round((share * 1024) ** 0.5)
        shares.append(
            ShareResult(
                share,
                side,
                side**2 / 1024,
                images,
                clean,
                r,
                cert,
                round(clean * images),
                round(r * images),
                None if cert is None else round(cert * images),
                (),
            )  # fmt: skip
        )
    return RobustnessCard(
        protocol=ProtocolInfo(protocol, profile, 0, SHARES[: len(robust)], {"images": images}),
        model=ModelIdentity(model, "0123456789abcdef", "cnn", 43, 32, {}, defense, certifier),
        data=DataIdentity("demo", "demo", "fedcba9876543210", images, 32, "round-robin over classes"),
        results=Results(tuple(shares), flags),
        run=RunInfo(2.0, "2026-01-01T00:00:00+00:00", {"device": "cpu"}, {}),
        reproduce=f"patchscope bench --model {model} --data demo --profile {profile} --out {model}.json",
    )


def save(card: RobustnessCard, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


def sample_cards(tmp_path: Path) -> list[Path]:
    """Four quick-profile cards given in an order that is not their rank (robust at 5%: 0.25, 0.75, 0.5, 0.5)."""
    return [
        save(make_card("gtsrb-cnn", (0.6, 0.4, 0.25, 0.1)), tmp_path / "in" / "cnn.json"),
        save(make_card("gtsrb-resnet", (0.9, 0.8, 0.75, 0.5), clean=0.95), tmp_path / "in" / "resnet.json"),
        save(make_card("gtsrb-vit", (0.7, 0.6, 0.5, 0.3), clean=0.8), tmp_path / "in" / "vit.json"),
        save(
            make_card("gtsrb-cnn", (0.8, 0.7, 0.5, 0.4), clean=0.85, certifier="ds-column"), tmp_path / "in" / "ds.json"
        ),
    ]


@pytest.fixture
def cards(tmp_path: Path) -> list[Path]:
    return sample_cards(tmp_path)


def table_models(html: str) -> list[list[str]]:
    """The model cell of each row of each table on the page, in page order."""
    tables = re.findall(r"<tbody>(.*?)</tbody>", html, re.S)
    return [re.findall(r'<td class="model" data-value="([^"]*)"', t) for t in tables]


def test_rows_are_ranked_by_robust_accuracy_at_the_headline_share(cards: list[Path], tmp_path: Path) -> None:
    made = write_leaderboard(cards, tmp_path / "board")
    headline = [r.headline for r in made.board.rows]
    assert headline == sorted(headline, reverse=True) == [0.75, 0.5, 0.5, 0.25]
    # a tie at the headline share goes to the higher clean accuracy
    assert [r.label for r in made.board.rows] == ["gtsrb-resnet", "gtsrb-cnn / ds-column", "gtsrb-vit", "gtsrb-cnn"]
    assert table_models(made.page.read_text()) == [[r.label for r in made.board.rows]]
    ds = made.board.rows[1]
    assert ds.certified == {s: r / 2 for s, r in ds.robust.items()} and ds.robust[0.05] == ds.headline


def test_another_headline_share_ranks_by_that_share(cards: list[Path]) -> None:
    board = build_leaderboard(load_cards(cards), headline_share=0.01)
    assert [r.headline for r in board.rows] == [0.9, 0.8, 0.7, 0.6]


def test_other_profiles_and_protocol_versions_are_ranked_apart(cards: list[Path], tmp_path: Path) -> None:
    standard = save(make_card("gtsrb-vit", (0.2, 0.1, 0.05, 0.0), profile="standard"), tmp_path / "s" / "vit.json")
    v2 = save(make_card("gtsrb-cnn", (0.99, 0.99, 0.99, 0.99), protocol="v2"), tmp_path / "v2" / "cnn.json")
    made = write_leaderboard([*cards, standard, v2], tmp_path / "board")
    groups = [(g.protocol, g.profile, len(g.rows)) for g in made.board.groups]
    assert groups == [("v2", "quick", 1), ("v1", "standard", 1), ("v1", "quick", 4)]
    html = made.page.read_text()
    assert len(table_models(html)) == 3  # one table each: a v2 card or a standard one never ranks among quick v1 cards
    for g in made.board.groups:
        assert f"protocol {g.protocol}" in html and f"profile {g.profile}" in html


def test_the_page_is_self_contained(cards: list[Path], tmp_path: Path) -> None:
    html = write_leaderboard(cards, tmp_path / "board").page.read_text()
    assert not re.search(r"""(?i)(src|href)\s*=\s*["']?\s*(https?:)?//""", html), "a link out of the page"
    assert not re.search(r"(?i)<link\b|@import|<script[^>]+src=", html), "a style sheet or script from elsewhere"
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 2 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "<script>" in html and "aria-sort" in html  # the sorting script is inline


def test_each_row_links_to_a_copy_of_its_card(cards: list[Path], tmp_path: Path) -> None:
    # two cards with the same file name from different folders: each gets its own copy
    twin = save(make_card("gtsrb-resnet", (0.1, 0.1, 0.1, 0.1)), tmp_path / "other" / "cnn.json")
    out = tmp_path / "board"
    made = write_leaderboard([*cards, twin], out)
    hrefs = [unquote(h) for h in re.findall(r'<a href="([^"]+)"', made.page.read_text())]
    assert len(hrefs) == len(set(hrefs)) == 5 and all(h.startswith(f"{CARDS}/") for h in hrefs)
    for row in made.board.rows:
        assert row.link in hrefs
        assert (out / row.link).read_bytes() == row.card.read_bytes()  # the card as measured, byte for byte
    # the board can be rebuilt from its own copies, in the same folder
    again = write_leaderboard(sorted((out / CARDS).glob("*.json")), out)
    assert sorted(r.link for r in again.board.rows) == sorted(hrefs)


def test_a_card_given_twice_is_one_row(cards: list[Path], tmp_path: Path) -> None:
    board = build_leaderboard(load_cards([cards[0], cards[0].parent / ".." / "in" / cards[0].name]))
    assert len(board.rows) == 1


def test_the_figure_draws_a_line_per_row_and_certified_dashed(cards: list[Path]) -> None:
    group = build_leaderboard(load_cards(cards)).groups[0]
    lines = share_figure(group).axes[0].get_lines()
    dashed = [line for line in lines if line.get_linestyle() == "--"]
    assert len(lines) == len(group.rows) + 1 and len(dashed) == 1
    assert list(dashed[0].get_ydata()) == list(group.rows[1].certified.values())


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "bad" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _bad_cards(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = make_card("gtsrb-cnn", (0.5,)).as_dict()
    out_of_range = json.loads(json.dumps(good))
    out_of_range["results"]["shares"][0]["robust"] = 1.5
    return {
        "missing": (tmp_path / "nowhere.json", "no such file"),
        "broken JSON": (_write(tmp_path, "broken.json", '{"schema": "patchscope.robustness-card", '), "not JSON"),
        "another version": (_write(tmp_path, "v2.json", json.dumps(good | {"version": 2})), "version 2"),
        "another schema": (
            _write(tmp_path, "other.json", json.dumps(good | {"schema": "something-else"})),
            "something-else",
        ),
        "not an object": (_write(tmp_path, "list.json", "[1, 2]"), "not a robustness card"),
        "against the schema": (_write(tmp_path, "range.json", json.dumps(out_of_range)), "results/shares/0/robust"),
        "a folder": (tmp_path, "a folder"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "broken JSON", "another version", "another schema", "not an object", "against the schema", "a folder"],
)
def test_a_bad_card_is_one_line_naming_the_file_and_nothing_is_written(
    case: str, cards: list[Path], tmp_path: Path
) -> None:
    bad, says = _bad_cards(tmp_path)[case]
    with pytest.raises(PatchscopeError, match=re.escape(str(bad))):
        load_cards([*cards, bad])
    out = tmp_path / "board"
    r = invoke("leaderboard", *map(str, cards), str(bad), "--out", str(out))
    assert r.code == 2, r.err
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith("patchscope: error: "), r.err
    assert str(bad) in r.err and says in r.err
    assert "Traceback" not in r.err and not out.exists()


def test_the_command_prints_the_page_and_json_prints_the_rows(cards: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "board"
    r = invoke("leaderboard", *map(str, cards), "--out", str(out))
    assert r.code == 0, r.err
    assert f"leaderboard: {(out / PAGE).resolve()}" in r.out and (out / PAGE).is_file()
    r = invoke("leaderboard", *map(str, cards), "--out", str(out), "--json")
    assert r.code == 0, r.err
    printed = json.loads(r.out)
    assert printed["page"] == str((out / PAGE).resolve())
    rows = printed["groups"][0]["rows"]
    assert [row["headline"] for row in rows] == [0.75, 0.5, 0.5, 0.25]
    assert rows[0]["model"] == "gtsrb-resnet" and rows[0]["robust"]["0.05"] == 0.75


def test_an_out_that_is_a_file_or_holds_a_file_for_cards_is_refused_first(cards: list[Path], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    r = invoke("leaderboard", *map(str, cards), "--out", str(afile))
    assert r.code == 2 and "--out" in r.err and "file" in r.err and afile.read_text() == "not a folder"
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / CARDS).write_text("x")
    r = invoke("leaderboard", *map(str, cards), "--out", str(tmp_path / "board"))
    assert r.code == 2 and CARDS in r.err and not (tmp_path / "board" / PAGE).exists()
