"""`patchscope bench`: the quick profile on the demo data writes a card that follows its schema and is recorded as a
run; bad input is one line and exit 2 before any work; a certificate an attack breaks fails the run (exit 1, no card);
an interrupt says what was kept and writes nothing."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from patchscope.defenses.counts import CertOutcomes
from patchscope.defenses.registry import CERTIFIERS
from patchscope.errors import Interrupted
from patchscope.workflows.bench_card import load_card, validate_card
from tests.cli._contract import assert_contract, invoke
from tests.cli.test_cli_shape import _parses


def test_bench_writes_a_valid_card_and_records_the_run(tmp_path: Path):
    card, store = tmp_path / "cards" / "card.json", tmp_path / "runs.db"
    args = ("--model", "gtsrb-cnn", "--data", "demo", "--shares", "0.05", "--seed", "1", "--out", str(card))
    r = invoke("--store", str(store), "bench", *args, "--json")
    assert r.code == 0, r.err
    printed = json.loads(r.out)
    assert printed == json.loads(card.read_text())
    validate_card(printed)
    loaded = load_card(card)
    assert loaded.protocol.seed == 1 and [s.share for s in loaded.results.shares] == [0.05]
    assert loaded.reproduce.startswith("patchscope bench --model gtsrb-cnn") and str(card) in loaded.reproduce
    _parses(loaded.reproduce)  # the CLI accepts the command that reproduces the card
    runs = json.loads(invoke("--store", str(store), "runs", "list", "--json").out)["runs"]
    assert [(run["kind"], run["status"]) for run in runs] == [("bench", "done")]
    assert runs[0]["metrics"]["5.0%"]["robust_accuracy"] == loaded.results.shares[0].robust


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--defense", "no-such"), "unknown --defense 'no-such'"),
        (("--certifier", "no-such"), "unknown --certifier 'no-such'"),
        (("--defense", "median", "--certifier", "ds-column"), "give one of them"),
        (("--option", "k=3"), "--option: options belong to a --defense or a --certifier"),
        (("--defense", "median", "--option", "nope=1"), "median' has no such option"),
        (("--profile", "slow"), "unknown --profile 'slow'"),
        (("--shares", "0.0001"), "--shares"),
        (("--shares", "0.05,1.2"), "0 < share < 1"),
        (("--shares", "abc"), "--shares 'abc'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], needle: str):
    out = tmp_path / "card.json"
    r = invoke("bench", "--model", "gtsrb-cnn", "--data", "demo", *args, "--out", str(out))
    assert_contract(r, args)
    assert r.code == 2 and needle in r.err_lines[0], r.err
    assert not out.exists()


def test_a_card_path_that_is_a_folder_is_refused(tmp_path: Path):
    r = invoke("bench", "--data", "demo", "--out", str(tmp_path))
    assert r.code == 2 and len(r.err_lines) == 1 and "--out" in r.err_lines[0], r.err


class _Lying:
    """A certifier that certifies every image the bare model gets right: attacks break some, the bench must fail."""

    precision = "fp32"

    def __init__(self, image_size: int, patch_side: int, device: str = "cpu") -> None:
        self.settings: dict[str, int] = {}

    def outcomes(self, model, images, labels, batch_size):  # noqa: ANN001, ANN201
        pred = model(images).argmax(1)
        right = pred == labels
        return CertOutcomes(right, right, right, pred, len(images))

    def counts(self, model, images, labels, batch_size):  # noqa: ANN001, ANN201
        return self.outcomes(model, images, labels, batch_size).counts()


def test_a_broken_certificate_fails_the_run_without_a_card(tmp_path: Path):
    CERTIFIERS.register("lying-test")(_Lying)
    out = tmp_path / "card.json"
    try:
        r = invoke("bench", "--model", "gtsrb-cnn", "--data", "demo", "--certifier", "lying-test",
                   "--shares", "0.1", "--out", str(out))  # fmt: skip
    finally:
        CERTIFIERS.remove("lying-test")
    assert r.code == 1 and "Traceback" not in r.err, r.err
    lines = [line for line in r.err_lines if not line.startswith("bench:")]  # progress lines in a log aside
    assert len(lines) == 1 and "self-check failed at share 10.0%" in lines[0] and "no card" in lines[0], r.err
    assert not out.exists()


def test_an_interrupt_keeps_the_finished_shares_and_resume_gives_the_same_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import patchscope.workflows.bench as bench

    real, calls, stopped = bench.bench_share, [], []

    def stop_at_the_second(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[3])
        if len(calls) == 2 and not stopped:
            stopped.append(True)
            raise Interrupted("", int(signal.SIGINT))
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "bench_share", stop_at_the_second)
    out, progress = tmp_path / "card.json", tmp_path / "card.json.progress"
    args = ("bench", "--data", "demo", "--shares", "0.1", "--out", str(out))
    r = invoke(*args)
    assert r.code == 130, r.err
    line = r.err_lines[-1]
    assert "at share 10.0% of the gtsrb-stop-to-yield setting (1 of 2 shares done); no card was written" in line
    assert f"checkpoint saved to {progress}; rerun with --resume" in line and "recorded as interrupted" in line
    assert not out.exists() and progress.exists()

    changed = invoke(*args, "--seed", "1", "--resume")
    assert changed.code == 2 and "--resume: the checkpoint was made with seed 0, not 1" in changed.err_lines[0]

    calls.clear()
    resumed = invoke(*args, "--resume", "--json")
    assert resumed.code == 0, resumed.err
    assert calls == [0.1] and not progress.exists()  # the protocol's share was read back, not measured again
    monkeypatch.setattr(bench, "bench_share", real)
    whole = invoke("bench", "--data", "demo", "--shares", "0.1", "--out", str(tmp_path / "whole.json"), "--json")
    assert json.loads(resumed.out)["results"] == json.loads(whole.out)["results"]
