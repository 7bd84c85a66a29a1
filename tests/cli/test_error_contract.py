"""The error contract, one case per known way to break it: bad input gets one clear line on stderr and exit 2,
no traceback, nothing written; SIGINT/SIGTERM say what was kept and exit 130/143; no silently wrong numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.cli._contract import assert_contract, invoke
from tests.conftest import PROGRESS, messages

ZOO_PATCH = "zoo:gtsrb-cnn/stop-yield"


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Path:
    """Bad model cards (beside the tiny model's weights), npz label sets and patch files."""
    d = tmp_path_factory.mktemp("bad")
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    cards = {
        "huge": {"input_size": 10**9},
        "negsize": {"input_size": -3},
        "strsize": {"input_size": "32"},
        "meanstr": {"mean": "abc"},
        "mean1": {"mean": [0.5]},
        "akbogus": {"arch_kwargs": {"bogus": 1}},
        "akneg": {"arch_kwargs": {"width": -3}},
        "akstr": {"arch_kwargs": "wide"},
    }
    for tag, change in cards.items():
        (d / f"{tag}.safetensors").write_bytes(tiny_model_path.read_bytes())
        (d / f"{tag}.json").write_text(json.dumps({**card, **change}))
    x = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(d / "l999.npz", x=x, y=np.array([0, 1, 2, 999]))
    np.savez(d / "lnan.npz", x=x, y=np.array([0, 1, 2, np.nan]))
    np.savez(d / "lneg.npz", x=x, y=np.array([0, 1, 2, -1]))
    meta = {
        "placement": "sticker",
        "location": "null",
        "image_size": "32",
        "meta": json.dumps({"source": "stop", "target": "yield"}),
    }
    patches = {
        "pnan": (torch.full((3, 5, 5), float("nan")), torch.ones(5, 5)),
        "pflat": (torch.rand(5, 7), torch.ones(5, 7)),
        "pwide": (torch.rand(3, 5, 7), torch.ones(5, 7)),
        "pzero": (torch.rand(3, 0, 0), torch.ones(0, 0)),
        "pempty": (torch.rand(3, 5, 5), torch.zeros(5, 5)),
    }
    for tag, (pixels, mask) in patches.items():
        (d / tag).mkdir()
        save_file({"pixels": pixels, "mask": mask}, str(d / tag / "patch.safetensors"), metadata=meta)
    (d / "afile").write_text("not a folder")
    return d


def _error(args: list[str], *needles: str) -> None:
    r = invoke(*args)
    assert_contract(r, tuple(args))
    assert r.code == 2, (args, r.code, r.out[:300], r.err)
    line = r.err_lines[-1].lower()
    for needle in needles:
        assert needle.lower() in line, (args, line)


def _defend(defense: str, option: str) -> list[str]:
    """``defend`` with one ``--option KEY=VALUE`` of ``defense`` against the zoo patch."""
    return ["defend", "--defense", defense, "--option", option, "--patch", ZOO_PATCH, "--data", "demo", "--limit", "8"]


# -- silently wrong numbers are now refused ---------------------------------------------------------------------------
WRONG_NUMBERS = [
    (["evaluate", "--data", "demo", "--limit", "20", "--batch-size", "-1"], ["--batch-size", "-1"]),
    (["evaluate", "--data", "demo", "--limit", "0"], ["--limit", ">= 1", "0"]),
    (["transfer", "--patches", ZOO_PATCH, "--models", "gtsrb-cnn", "--data", "demo", "--limit", "0"], ["--limit"]),
    (_defend("lgs", "threshold=nan"), ["--option threshold", "nan"]),
    (
        [
            "attack",
            "--data",
            "demo",
            "--source",
            "stop",
            "--target",
            "stop",
            "--steps",
            "1",
            "--limit",
            "4",
            "--out",
            "{tmp}/o",
        ],
        ["target", "differ"],
    ),
    (
        ["attack", "--data", "demo", "--location", "40,40", "--steps", "1", "--limit", "4", "--out", "{tmp}/o"],
        ["--location", "0..25", "40,40"],
    ),
    (
        ["attack", "--data", "demo", "--location", "-3,0", "--steps", "1", "--limit", "4", "--out", "{tmp}/o"],
        ["--location -3,0: top must be >= 0, got -3"],
    ),
    (
        [
            "curve",
            "--data",
            "demo",
            "--eval-data",
            "demo",
            "--sizes",
            "",
            "--steps",
            "1",
            "--limit",
            "4",
            "--out",
            "{tmp}/o",
        ],
        ["--sizes"],
    ),
]

# -- values that used to raise tracebacks ------------------------------------------------------------------------------
UNCHECKED = [
    *[
        ([*cmd, "--limit", "-3"], ["--limit", "-3"])
        for cmd in (
            ["attack", "--data", "demo", "--steps", "1", "--out", "{tmp}/o"],
            ["evaluate", "--data", "demo"],
            ["curve", "--data", "demo", "--eval-data", "demo", "--steps", "1", "--out", "{tmp}/o"],
            ["defend", "--defense", "jpeg", "--patch", ZOO_PATCH, "--data", "demo"],
            ["certify", "--defense", "patchcleanser", "--data", "demo"],
            ["transfer", "--patches", ZOO_PATCH, "--models", "gtsrb-cnn", "--data", "demo"],
        )
    ],
    (["attack", "--data", "demo", "--lr", "nan", "--steps", "1", "--limit", "4", "--out", "{tmp}/o"], ["--lr", "nan"]),
    (["attack", "--data", "demo", "--lr", "-1", "--steps", "1", "--limit", "4", "--out", "{tmp}/o"], ["--lr", "-1"]),
    (["train", "--arch", "cnn", "--data", "demo", "--epochs", "1", "--lr", "nan", "--out", "{tmp}/o"], ["--lr", "nan"]),
    (["train", "--arch", "cnn", "--data", "demo", "--epochs", "1", "--lr", "-1", "--out", "{tmp}/o"], ["--lr", "-1"]),
    (
        [
            "train",
            "--arch",
            "cnn",
            "--data",
            "demo",
            "--epochs",
            "1",
            "--arch-kwargs",
            '{"bogus":1}',
            "--out",
            "{tmp}/o",
        ],
        ["--arch-kwargs", "bogus"],
    ),
    (
        [
            "train",
            "--arch",
            "cnn",
            "--data",
            "demo",
            "--epochs",
            "1",
            "--arch-kwargs",
            '{"width":-3}',
            "--out",
            "{tmp}/o",
        ],
        ["--arch-kwargs", "width", "-3"],
    ),
    (
        ["train", "--arch", "cnn", "--data", "demo", "--epochs", "1", "--ema-decay", "2", "--out", "{tmp}/o"],
        ["--ema-decay", "2"],
    ),
    (
        ["train", "--arch", "cnn", "--data", "demo", "--epochs", "1", "--threads", "-2", "--out", "{tmp}/o"],
        ["--threads", "-2"],
    ),
    (_defend("blur", "sigma=nan"), ["--option sigma", "nan"]),
    (_defend("median", "kernel=1001"), ["--option kernel", "1001"]),
    (
        ["attack", "--data", "demo", "--batch-size", "100000000", "--steps", "1", "--limit", "4", "--out", "{tmp}/o"],
        ["--batch-size", "100000000"],
    ),
    (["evaluate", "--data", "npz:{bad}/lnan.npz"], ["labels", "whole numbers"]),
    (["train", "--arch", "cnn", "--epochs", "1", "--data", "npz:{bad}/lneg.npz", "--out", "{tmp}/o"], ["labels", "-1"]),
    (["evaluate", "--data", "npz:{bad}/l999.npz"], ["labels", "999"]),
    (
        ["train", "--arch", "cnn", "--epochs", "1", "--data", "npz:{bad}/l999.npz", "--out", "{tmp}/o"],
        ["labels", "999"],
    ),
    (["evaluate", "--data", "demo", "--patch", "{bad}/pzero", "--limit", "8"], ["side", "0"]),
    # found by the fuzzer
    (
        [
            "defend",
            "--defense",
            "jpeg",
            "--patch",
            ZOO_PATCH,
            "--data",
            "demo",
            "--limit",
            "4",
            "--seed",
            "9223372036854775808",
        ],
        ["--seed"],
    ),
    (
        ["study", "robustness", "--models", "gtsrb-cnn", "--data", "demo", "--source", "yield", "--out", "{tmp}/o"],
        ["--target must differ from --source"],
    ),
    (["report", "--runs", "9223372036854775808", "--out", "{tmp}/o"], ["run id"]),
    (["evaluate", "--data", "demo", "--patch", "{bad}/pempty", "--limit", "8"], ["mask", "empty"]),
]

# -- model cards are checked, in every command that takes a model ------------------------------------------------------
CARDS = [
    ("huge", ["input_size", "1000000000"]),
    ("negsize", ["input_size", "-3"]),
    ("strsize", ["input_size", "'32'"]),
    ("meanstr", ["mean", "abc"]),
    ("mean1", ["mean", "3 numbers"]),
    ("akbogus", ["arch_kwargs", "bogus"]),
    ("akneg", ["arch_kwargs", "width", "-3"]),
    ("akstr", ["arch_kwargs", "wide"]),
]
MODEL_COMMANDS = {
    "evaluate": ["evaluate", "--models", "{m}", "--data", "demo", "--limit", "4"],
    "attack": ["attack", "--model", "{m}", "--data", "demo", "--steps", "1", "--limit", "4", "--out", "{tmp}/o"],
    "defend": ["defend", "--defense", "jpeg", "--model", "{m}", "--patch", ZOO_PATCH, "--data", "demo", "--limit", "4"],
    "certify": ["certify", "--defense", "ds-column", "--model", "{m}", "--data", "demo", "--limit", "2"],
    "explain": [
        "explain",
        "--model",
        "{m}",
        "--patch",
        ZOO_PATCH,
        "--data",
        "demo",
        "--limit",
        "2",
        "--out",
        "{tmp}/o",
    ],
    "transfer": ["transfer", "--models", "{m}", "--patches", ZOO_PATCH, "--data", "demo", "--limit", "2"],
    "train": ["train", "--init", "{m}", "--data", "demo", "--epochs", "1", "--out", "{tmp}/o"],
}

# -- misleading messages -----------------------------------------------------------------------------------------------
MESSAGES = [
    (["evaluate", "--data", "demo", "--patch", "{bad}/pnan", "--limit", "8"], ["pixels", "nan"]),
    (["explain", "--data", "demo", "--patch", "{bad}/pnan", "--limit", "2", "--out", "{tmp}/o"], ["pixels", "nan"]),
    (
        [
            "attack",
            "--data",
            "demo",
            "--loss",
            "margin",
            "--kappa",
            "nan",
            "--steps",
            "1",
            "--limit",
            "4",
            "--out",
            "{tmp}/o",
        ],
        ["--kappa", "nan"],
    ),
    (["evaluate", "--data", "demo", "--patch", "{bad}/pflat", "--limit", "8"], ["pixels", "(5, 7)"]),
    (["evaluate", "--data", "demo", "--patch", "{bad}/pwide", "--limit", "8"], ["pixels", "(3, 5, 7)"]),
    (["transfer", "--patches", "", "--models", "gtsrb-cnn", "--data", "demo"], ["--patches"]),
    (["runs", "list", "--limit", "-1"], ["--limit", "-1"]),
    (["runs", "list", "--status", "x"], ["--status 'x': choose from"]),
    (
        ["attack", "--data", "demo", "--steps", "1", "--candidates", "0", "--limit", "4", "--out", "{tmp}/o"],
        ["--candidates", "0"],
    ),
    (["certify", "--defense", "patchcleanser", "--data", "demo", "--limit", "2", "-o", "k=0"], ["--option k", "0"]),
]


def _fill(args: list[str], tmp: Path, bad: Path, model: str = "") -> list[str]:
    return [a.replace("{tmp}", str(tmp)).replace("{bad}", str(bad)).replace("{m}", model) for a in args]


@pytest.mark.parametrize(
    "args,needles",
    WRONG_NUMBERS + UNCHECKED + MESSAGES,
    ids=lambda v: " ".join(v)[:60] if isinstance(v, list) and v and v[0][0] != "-" else None,
)
def test_bad_value_is_one_line_exit_2_and_writes_nothing(
    args: list[str], needles: list[str], tmp_path: Path, bad: Path
) -> None:
    _error(_fill(args, tmp_path, bad), *needles)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
@pytest.mark.parametrize("card,needles", CARDS, ids=[c for c, _ in CARDS])
def test_a_bad_model_card_is_refused_by_every_command(
    command: str, card: str, needles: list[str], tmp_path: Path, bad: Path
) -> None:
    _error(_fill(MODEL_COMMANDS[command], tmp_path, bad, str(bad / f"{card}.safetensors")), "model card", *needles)


def test_combined_checks_name_the_value_that_was_wrong(tmp_path: Path) -> None:
    _error(
        [
            "study",
            "robustness",
            "--models",
            "gtsrb-cnn",
            "--data",
            "demo",
            "--steps",
            "0",
            "--out",
            str(tmp_path / "o"),
        ],
        "--steps",
        "0",
    )
    _error(
        [
            "study",
            "robustness",
            "--models",
            "gtsrb-cnn",
            "--data",
            "demo",
            "--conditions",
            "99",
            "--out",
            str(tmp_path / "o"),
        ],
        "--conditions",
        "99",
    )


# -- --out is checked before the work ----------------------------------------------------------------------------------
OUT_COMMANDS = {
    "train": ["train", "--arch", "cnn", "--data", "demo", "--epochs", "1"],
    "attack": ["attack", "--data", "demo", "--steps", "1", "--limit", "4"],
    "study": ["study", "robustness", "--models", "gtsrb-cnn", "--data", "demo", "--steps", "1"],
    "demo": ["demo", "--quick"],
    "report": ["report", "--runs", "1"],
    "curve": ["curve", "--data", "demo", "--eval-data", "demo", "--steps", "1", "--limit", "2"],
    "explain": ["explain", "--patch", ZOO_PATCH, "--data", "demo", "--limit", "2"],
}


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_an_out_that_is_a_file_is_refused_at_once(command: str, bad: Path) -> None:
    started = time.perf_counter()
    _error([*OUT_COMMANDS[command], "--out", str(bad / "afile")], "--out", "file")
    assert time.perf_counter() - started < 20  # refused before the work, not after it
    assert (bad / "afile").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", ["train", "attack", "study"])
def test_an_out_under_a_read_only_folder_is_refused_at_once(command: str, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _error([*OUT_COMMANDS[command], "--out", str(locked / "sub")], "--out", "not writable")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".hidden", ""])
def test_train_name_cannot_leave_out(name: str, tmp_path: Path) -> None:
    _error(
        [
            "train",
            "--arch",
            "cnn",
            "--data",
            "demo",
            "--epochs",
            "1",
            "--name",
            name,
            "--out",
            str(tmp_path / "models"),
        ],
        "--name",
    )
    assert not any(tmp_path.parent.glob("escape*"))


# -- resume with other settings is refused ----------------------------------------------------------------------------
def interrupted_attack(model_name: str, folder: Path, steps: int, limit: int, every: int) -> Path:
    """An attack checkpoint in ``folder`` at step 3 of ``steps``, made as ``attack --model MODEL --data demo --steps
    STEPS --limit LIMIT --batch-size LIMIT --candidates 1 --checkpoint-every EVERY`` makes it."""
    from patchscope.attacks import AttackConfig, AttackInterrupted, PatchAttack
    from patchscope.data import load_data
    from patchscope.models import create_model
    from patchscope.models.checkpoint import weights_fingerprint

    full = load_data("demo")
    stops = full.of_class("stop").head(limit)
    model = create_model(model_name)
    identity = {"model": model_name, "data_hash": full.data_hash(), "images": limit}
    runner = PatchAttack(
        model,
        AttackConfig(steps=steps, batch_size=limit, candidates=1, target=13),
        checkpoint=folder / "checkpoint.pt",
        checkpoint_every=every,
        progress=False,
        identity=identity | {"weights": weights_fingerprint(model)},
    )
    lr = runner._lr

    def stop_at_3(step: int) -> float:
        runner._stop = step >= 2
        return lr(step)

    runner._lr = stop_at_3  # type: ignore[method-assign]
    with pytest.raises(AttackInterrupted, match=f"step 3 of {steps}"):
        runner(stops.float_images(), stops.labels)
    return folder


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """An attack checkpoint at step 3 of 6, made as ``attack --data demo --steps 6 --limit 8 ...`` makes it."""
    return interrupted_attack("gtsrb-cnn", tmp_path / "run", 6, 8, 2)


RESUME = [
    "attack",
    "--data",
    "demo",
    "--steps",
    "6",
    "--limit",
    "8",
    "--batch-size",
    "8",
    "--candidates",
    "1",
    "--checkpoint-every",
    "2",
    "--resume",
]


@pytest.mark.parametrize(
    "change,needles",
    [
        (["--size", "0.1"], ["size 0.05", "0.1"]),
        (["--seed", "3"], ["seed 0", "3"]),
        (["--model", "gtsrb-resnet"], ["model gtsrb-cnn", "gtsrb-resnet"]),
    ],
)
def test_resume_with_other_settings_is_refused(change: list[str], needles: list[str], checkpoint: Path) -> None:
    _error([*RESUME, "--out", str(checkpoint), *change], "--resume", *needles)
    assert (checkpoint / "checkpoint.pt").exists() and not (checkpoint / "patch.safetensors").exists()


def test_resume_with_fewer_steps_is_refused_then_the_same_settings_finish(checkpoint: Path) -> None:
    args = [*RESUME, "--out", str(checkpoint)]
    _error([*args[: args.index("--steps") + 1], "5", *args[args.index("--steps") + 2 :]], "steps 6", "5")
    r = invoke(*args)
    assert r.code == 0, r.err
    assert (checkpoint / "patch.safetensors").exists() and not (checkpoint / "checkpoint.pt").exists()


# -- interrupts: one line, what was kept, 130/143, the run recorded as interrupted -------------------------------------
INTERRUPTED = {
    "certify": ["certify", "--defense", "patchcleanser", "--data", "demo", "--limit", "100"],
    "train": ["train", "--arch", "cnn", "--data", "demo", "--epochs", "30", "--out", "{tmp}/models"],
    "evaluate": ["evaluate", "--models", "gtsrb-vit", "--data", "demo", "--conditions", "sweep", "--patch", ZOO_PATCH],
    "defend": [
        "defend",
        "--defense",
        "median",
        "--patch",
        ZOO_PATCH,
        "--data",
        "demo",
        "--adaptive",
        "--steps",
        "2000",
        "--limit",
        "16",
    ],
    "curve": [
        "curve",
        "--data",
        "demo",
        "--eval-data",
        "demo",
        "--steps",
        "3000",
        "--limit",
        "8",
        "--out",
        "{tmp}/curve",
    ],
}


@pytest.mark.parametrize(
    "command,sig",
    [
        ("certify", signal.SIGINT),
        ("train", signal.SIGTERM),
        ("evaluate", signal.SIGINT),
        ("defend", signal.SIGINT),
        ("curve", signal.SIGTERM),
    ],
)
def test_an_interrupt_says_what_was_kept_and_exits_128_plus_the_signal(
    command: str, sig: signal.Signals, tmp_path: Path
) -> None:
    store = tmp_path / "runs.db"
    env = {**os.environ, "PATCHSCOPE_STORE": str(store)}
    args = _fill(INTERRUPTED[command], tmp_path, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchscope", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    from patchscope.runs.store import RunStore

    end = time.time() + 120
    while time.time() < end and proc.poll() is None:  # wait until the run is recorded: the work has begun
        if store.exists() and RunStore(store).runs(limit=1):
            break
        time.sleep(0.1)
    time.sleep(1.0)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    lines = messages(err)
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{command} interrupted by {sig.name}" in lines[0] and "recorded as interrupted" in lines[0], lines[0]
    assert "None" not in lines[0] and "--resume" not in lines[0]  # nothing claims a checkpoint that does not exist
    assert out == ""
    run = RunStore(store).runs(limit=1)[0]
    assert run.status == "interrupted" and run.kind == command.split()[0]
    assert not (tmp_path / "models").exists() and not (tmp_path / "curve" / "curve.json").exists()


def test_certify_with_many_masks_reports_progress_image_by_image(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """k=100 (one mask per place: 676 masks) costs up to ~228k passes an image: chunks shrink so progress shows
    per image."""
    monkeypatch.setenv("PATCHSCOPE_PROGRESS_SECONDS", "0")
    r = invoke(
        "certify",
        "--defense",
        "patchcleanser",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--limit",
        "2",
        "--option",
        "k=100",
        "--json",
    )
    assert r.code == 0, r.err
    steps = [line for line in r.err_lines if PROGRESS.match(line) and "done" not in line]
    assert [line.split(":")[1].split()[0] for line in steps] == ["1/2", "2/2"], r.err
    assert json.loads(r.out)["masks"] == 26 * 26
