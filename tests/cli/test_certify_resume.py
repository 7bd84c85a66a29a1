"""Certification keeps its counts after every chunk: an interrupted run resumed from them gives the counts of an
uninterrupted one; changed settings and foreign files are refused; the command line says how to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest
import torch
from torch import nn

from patchscope.errors import Interrupted, PatchscopeError
from patchscope.workflows.certify import CertifyCheckpoint, certify
from tests.conftest import messages, run_cli


class StopAfter(nn.Module):
    """``model`` that raises an interrupt at its ``n``-th forward call."""

    def __init__(self, model: nn.Module, n: int) -> None:
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise Interrupted("", int(signal.SIGINT))
        return self.model(x)


def _numbers(result) -> dict:
    return {k: v for k, v in asdict(result).items() if k not in ("seconds", "images_per_second")}


def test_resume_gives_the_uninterrupted_counts(demo, tiny_model, tmp_path):
    data = demo.head(40)
    run = {"batch_size": 32, "chunk": 8, "progress": False}
    straight = certify(tiny_model, data, "ds-column", 0.05, **run)
    ckpt = CertifyCheckpoint(tmp_path / "c.json")
    with pytest.raises(Interrupted, match=r"of 40 images certified; checkpoint saved to .*c\.json"):
        certify(StopAfter(tiny_model, 30), data, "ds-column", 0.05, checkpoint=ckpt, **run)
    kept = json.loads(ckpt.path.read_text())
    assert 0 < kept["done"] < 40 and kept["counts"][4] == kept["done"]
    resumed = certify(tiny_model, data, "ds-column", 0.05, checkpoint=CertifyCheckpoint(ckpt.path, True), **run)
    assert _numbers(resumed) == _numbers(straight)


def test_resume_refuses_other_settings_and_foreign_files(demo, tiny_model, tmp_path):
    data, run = demo.head(16), {"batch_size": 32, "chunk": 8, "progress": False}
    ckpt = CertifyCheckpoint(tmp_path / "c.json")
    certify(tiny_model, data, "ds-column", 0.05, checkpoint=ckpt, **run)
    with pytest.raises(PatchscopeError, match="made with patch_size 0.05, not 0.1"):
        certify(tiny_model, data, "ds-column", 0.1, checkpoint=CertifyCheckpoint(ckpt.path, True), **run)
    (tmp_path / "x.json").write_text('{"counts": 3}')
    with pytest.raises(PatchscopeError, match="not a certification checkpoint"):
        certify(tiny_model, data, "ds-column", 0.05, checkpoint=CertifyCheckpoint(tmp_path / "x.json", True), **run)


def test_the_command_line_keeps_the_counts_on_ctrl_c_and_resumes(tiny_model_path, tmp_path):
    store = tmp_path / "store" / "runs.db"
    env = {**os.environ, "PATCHSCOPE_STORE": str(store)}
    args = ["certify", "--model", str(tiny_model_path), "--defense", "ds-column", "--data", "demo", "--batch-size",
            "16", "--device", "cpu", "--json"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "patchscope", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    folder, deadline = store.parent / "checkpoints", time.time() + 300
    while not (folder.exists() and any(folder.iterdir())) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(messages(err)) == 1 and "images certified; checkpoint saved to" in err and "rerun with --resume" in err
    resumed = run_cli(*args, "--resume", env={"PATCHSCOPE_STORE": str(store)})
    assert resumed.returncode == 0, resumed.stderr
    assert not any(folder.iterdir())  # the result is recorded, its checkpoint gone
    fresh = run_cli(*args, env={"PATCHSCOPE_STORE": str(store)})
    a, b = json.loads(resumed.stdout), json.loads(fresh.stdout)
    for key in ("images", "clean_accuracy", "defended_accuracy", "certified_accuracy"):
        assert a[key] == b[key], key
