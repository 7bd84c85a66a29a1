"""The robustness card: its JSON follows the shipped schema, reads back to the same card, and refuses other formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchscope.errors import PatchscopeError
from patchscope.workflows.bench_card import (
    SCHEMA_NAME,
    SCHEMA_VERSION,
    AttackOutcome,
    DataIdentity,
    Flag,
    ModelIdentity,
    ProtocolInfo,
    Results,
    RobustnessCard,
    RunInfo,
    SeededResult,
    ShareResult,
    card_schema,
    load_card,
    validate_card,
)


def _card(robust: int = 2) -> RobustnessCard:
    attack = AttackOutcome("per-image", "white-box", "model", 4, 4 - robust, 10, 80)
    share = ShareResult(0.05, 7, 49 / 1024, 4, 1.0, robust / 4, None, 4, robust, None, (attack,))
    seeded = SeededResult("gtsrb-stop-to-yield", 14, 13, (share,))
    return RobustnessCard(
        protocol=ProtocolInfo("v1", "quick", 0, (0.05,), {"images": 4}),
        model=ModelIdentity("gtsrb-cnn", "0123456789abcdef", "cnn", 43, 32, {"mean": [0.5, 0.5, 0.5]}),
        data=DataIdentity("demo", "demo", "fedcba9876543210", 4, 32, "round-robin over classes"),
        results=Results((share,), (Flag("gradient-masking", 0.05, "sparse-rs broke 1 image"),), seeded),
        run=RunInfo(1.5, "2026-01-01T00:00:00+00:00", {"device": "cpu"}, {"torch": "2"}),
        reproduce="patchscope bench --model gtsrb-cnn --data demo --out card.json",
    )


def test_a_card_follows_its_schema_and_reads_back(tmp_path: Path) -> None:
    card = _card()
    validate_card(card.as_dict())
    card.save(tmp_path / "card.json")
    assert load_card(tmp_path / "card.json") == card
    assert json.loads((tmp_path / "card.json").read_text())["schema"] == SCHEMA_NAME


def test_the_schema_refuses_what_a_card_cannot_hold() -> None:
    bad = _card().as_dict()
    bad["results"]["shares"][0]["robust"] = 1.5
    with pytest.raises(PatchscopeError, match="results/shares/0/robust"):
        validate_card(bad)
    missing = _card().as_dict()
    del missing["model"]["weights"]
    with pytest.raises(PatchscopeError, match="weights"):
        validate_card(missing)


def test_another_version_is_refused() -> None:
    data = _card().as_dict() | {"version": SCHEMA_VERSION + 1}
    with pytest.raises(PatchscopeError, match="version"):
        RobustnessCard.from_dict(data)


def test_the_schema_names_every_field_the_dataclasses_write() -> None:
    """A field added to the dataclasses but not to the schema (or the other way round) fails here."""
    schema, card = card_schema(), _card().as_dict()
    assert set(schema["properties"]) == set(card)
    for section in ("protocol", "model", "data", "results", "run"):
        assert set(schema["properties"][section]["properties"]) == set(card[section]), section
    share = card["results"]["shares"][0]
    assert set(schema["$defs"]["share_result"]["properties"]) == set(share)
    assert set(schema["$defs"]["attack"]["properties"]) == set(share["attacks"][0])
