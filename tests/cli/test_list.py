"""`patchscope list KIND` and the registry-driven parts of `defend` / `certify`: every entry with its options and
defaults, names in --help read from the registry (a new entry shows up with no change to the command line)."""

from __future__ import annotations

import json

import pytest
import torch

from patchscope.cli.common import REGISTRY_KINDS, registry
from patchscope.defenses import DEFENSES, InputDefense, register_defense
from tests.cli._contract import assert_contract, invoke


@pytest.mark.parametrize("kind", REGISTRY_KINDS)
def test_list_shows_every_entry_with_its_options_and_defaults(kind):
    r = invoke("list", kind, "--json")
    assert_contract(r, ("list", kind, "--json"))
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    reg = registry(kind)
    assert [row["name"] for row in rows] == reg.list()
    for row in rows:
        spec = reg.spec(row["name"])
        assert {o["name"]: o["default"] for o in row["options"]} == json.loads(json.dumps(spec.defaults))
        assert row["summary"] == spec.summary and all(o["type"] for o in row["options"])


def test_the_defenses_table_shows_each_option_with_its_default_and_what_it_does(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # wide enough that no cell wraps
    r = invoke("list", "defenses")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    for name in DEFENSES.list():
        assert any(line.startswith(name + " ") for line in lines), name
    jpeg = next(line for line in lines if line.startswith("jpeg "))
    assert "quality=75 (float): the JPEG quality, 1-100." in jpeg
    assert "kernel=3 (int)" in r.out and "window=5 (int)" in r.out


def test_an_unknown_kind_is_one_line():
    r = invoke("list", "widgets")
    assert r.code == 2 and r.err_lines == [
        "patchscope: error: unknown kind 'widgets': choose from " + ", ".join(REGISTRY_KINDS)
    ]


def test_a_new_defense_appears_in_help_list_and_options_with_no_cli_change():
    @register_defense("darken-test")
    class Darken(InputDefense):
        """Darkens the input (a test defense).

        Args:
            factor: what the input is multiplied by.
        """

        def __init__(self, model: torch.nn.Module, factor: float = 0.5, bpda: bool = False) -> None:
            super().__init__(model, bpda)
            self.factor = factor

        def clean(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.factor

    try:
        shown = invoke("defend", "--help")
        assert shown.code == 0 and "darken-test" in shown.out and "gaussian-noise" in shown.out
        listed = json.loads(invoke("list", "defenses", "--json").out)
        (row,) = [row for row in listed if row["name"] == "darken-test"]
        assert row["options"] == [
            {"name": "factor", "type": "float", "default": 0.5, "doc": "what the input is multiplied by."}
        ]
        assert DEFENSES.parse("darken-test", ["factor=0.25"]) == {"factor": 0.25}
    finally:
        DEFENSES.remove("darken-test")
    assert "darken-test" not in invoke("defend", "--help").out


def test_an_unknown_option_key_or_a_bad_value_is_one_line_naming_option():
    for bad, needle in [
        ("nope=1", "--option nope"),
        ("quality=high", "--option quality='high'"),
        ("quality", "--option"),
    ]:
        r = invoke(
            "defend", "--defense", "jpeg", "--patch", "zoo:gtsrb-cnn/stop-yield", "--data", "demo", "--option", bad
        )
        assert_contract(r, ("defend", bad))
        assert r.code == 2 and len(r.err_lines) == 1 and needle in r.err_lines[0], r.err
    r = invoke("certify", "--defense", "ds-column", "--data", "demo", "--option", "k=3")
    assert r.code == 2 and r.err_lines == [
        "patchscope: error: --option k: certifier 'ds-column' has no such option (its options: band)"
    ]
