"""Crash and resume: SIGKILL mid-run then --resume gives the same patch; SIGINT saves and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from patchscope.attacks import Patch
from tests.conftest import run_cli


def _args(model: Path, out: Path) -> list[str]:
    return [
        "attack",
        "--model",
        str(model),
        "--data",
        "demo",
        "--steps",
        "40",
        "--batch-size",
        "8",
        "--candidates",
        "2",
        "--limit",
        "24",
        "--checkpoint-every",
        "3",
        "--out",
        str(out),
    ]


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "patchscope", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, "no checkpoint appeared"
        time.sleep(0.05)


def test_sigkill_then_resume_gives_the_same_patch_as_an_uninterrupted_run(tmp_path: Path, tiny_model_path: Path):
    whole = run_cli(*_args(tiny_model_path, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    proc = _start(_args(tiny_model_path, out))
    _wait_for(out / "checkpoint.pt", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (out / "patch.safetensors").exists()  # nothing half-written
    resumed = run_cli(*_args(tiny_model_path, out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = Patch.load(tmp_path / "whole"), Patch.load(out)
    assert torch.equal(a.pixels, b.pixels) and a.location == b.location
    assert not (out / "checkpoint.pt").exists()


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path, tiny_model_path: Path):
    out = tmp_path / "stopped"
    args = _args(tiny_model_path, out)
    args[args.index("--steps") + 1] = "4000"
    proc = _start(args)
    _wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert (out / "checkpoint.pt").exists() and not (out / "patch.safetensors").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 0 < state["step"] < 4000
