"""`patchscope attack --attack NAME`: the choices are the registered attacks (read from the registry for --help),
`--per-image` is `--attack per-image`, and a registered attack of its own (sparse-rs) runs end to end: its per-image
patches are saved, recorded as a run and measured by `evaluate` as they were when made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchscope.attacks import Attack, list_attacks, register_attack
from patchscope.attacks.registry import ATTACKS
from tests.cli._contract import assert_contract, invoke


def test_help_lists_every_registered_attack_a_new_one_included(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # wide enough that no name wraps

    @register_attack("blank-test")
    class Blank(Attack):
        """A test attack."""

    try:
        r = invoke("attack", "--help")
        assert r.code == 0, r.err
        assert "--attack" in r.out and all(name in r.out for name in list_attacks())
        assert "blank-test" in r.out
    finally:
        ATTACKS.remove("blank-test")
    assert "blank-test" not in invoke("attack", "--help").out


def test_attack_sparse_rs_runs_end_to_end_and_is_recorded(tmp_path: Path, tiny_model_path: Path):
    out, store = tmp_path / "srs", tmp_path / "store"
    common = ("--model", str(tiny_model_path), "--data", "demo", "--limit", "6", "--size", "0.1")
    r = invoke("--store", str(store), "attack", *common, "--attack", "sparse-rs", "--steps", "40", "--out", str(out))
    assert r.code == 0, r.err
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.json", "patches.png", "patches.safetensors"}
    config, made = (json.loads((out / f).read_text()) for f in ("config.json", "metrics.json"))
    assert config["attack"] == "sparse-rs" and config["steps"] == 40 and made["per_image"] is True
    assert made["attack_images"] == 6
    runs = json.loads(invoke("--store", str(store), "runs", "list", "--json").out)["runs"]
    assert [run["kind"] for run in runs] == ["attack"]
    measured = invoke("evaluate", "--models", str(tiny_model_path), "--data", "demo", "--patch", str(out), "--json")
    assert measured.code == 0, measured.err
    result = json.loads(measured.out)["models"][str(tiny_model_path)]
    assert result["images"] == 6 and result["targeted_success"] == pytest.approx(made["targeted_success"], abs=1e-6)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--attack", "no-such-attack"), ", ".join(list_attacks())),
        (("--attack", "sparse-rs", "--per-image"), "--per-image is --attack per-image"),
        (("--attack", "sparse-rs", "--resume"), "--attack sparse-rs runs in one process"),
        (("--attack", "sparse-rs", "--placement", "sticker"), "placement must be on-object"),
        (("--attack", "sparse-rs", "--init", "zoo:gtsrb-cnn/stop-yield"), "takes no start patch"),
    ],
)
def test_bad_attack_choices_are_one_line(tmp_path: Path, args: tuple[str, ...], words: str):
    full = ("attack", "--data", "demo", "--limit", "2", "--steps", "2", "--out", str(tmp_path / "x"), *args)
    r = invoke(*full)
    assert_contract(r, full)
    assert r.code == 2 and words in r.err, r.err
