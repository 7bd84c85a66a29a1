"""An interrupted curve keeps each finished size and the running attack's checkpoint; ``--resume`` finishes it to
the curve of an uninterrupted run, refuses changed settings, and the checkpoints go once the curve is written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import messages, run_cli


def _args(model: Path, out: Path, steps: int = 300) -> list[str]:
    return ["curve", "--model", str(model), "--data", "demo", "--eval-data", "demo", "--sizes", "0.05,0.1", "--steps",
            str(steps), "--limit", "16", "--batch-size", "16", "--candidates", "1", "--placements", "on-object",
            "--out", str(out), "--device", "cpu", "--json"]  # fmt: skip


def test_ctrl_c_keeps_the_finished_sizes_and_resume_finishes_the_same_curve(tmp_path: Path, tiny_model_path: Path):
    out, straight = tmp_path / "curve", tmp_path / "straight"
    proc = subprocess.Popen([sys.executable, "-m", "patchscope", *_args(tiny_model_path, out)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    first = out / "checkpoints" / "on-object-0.05.json"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # into the second size's attack
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(messages(err)) == 1 and "1 of 2 on-object sizes done" in err and "rerun with --resume" in err, err
    assert not (out / "curve.json").exists() and (out / "checkpoints" / "on-object-0.1.pt").exists()

    changed = run_cli(*_args(tiny_model_path, out, steps=301), "--resume")
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1, changed.stderr
    assert "the checkpoint was made with steps 300, not 301" in changed.stderr

    resumed = run_cli(*_args(tiny_model_path, out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / "checkpoints").exists()
    fresh = run_cli(*_args(tiny_model_path, straight))
    assert fresh.returncode == 0, fresh.stderr
    a, b = (json.loads((d / "curve.json").read_text())["on-object"] for d in (out, straight))
    assert a["rows"] == b["rows"] and a["a90"] == b["a90"]
