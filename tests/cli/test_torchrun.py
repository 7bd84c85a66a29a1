"""The measuring commands under torchrun: two gloo processes on the CPU print one result, the same numbers as one
process, record one run, and leave the process group before exiting (exit status 0, nothing on stderr about it).

The measurements split their batches (or chunks of images) over the ranks and combine them exactly; a patch that
``curve`` and ``defend --adaptive`` optimise splits its batch as ``attack`` does, so it equals one process's up to
the float rounding of summed gradients and what is measured on it is compared with a tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from patchscope.runs.store import RunStore
from tests.cli._contract import invoke

PATCH = "zoo:gtsrb-cnn/stop-yield"
#: what differs between any two runs: wall-clock time, and the folder each run writes to
UNEQUAL = {"seconds", "images_per_second", "out"}
#: numbers measured on a patch optimised by two processes: equal up to a few (image, condition) pairs
ATTACKED = {"success", "points", "a90", "targeted_success", "untargeted_success", "target_confidence"}


@contextmanager
def _one_thread() -> Iterator[None]:
    """One thread, as each torchrun process gets (OMP_NUM_THREADS=1): the same kernels, the same rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def one(*args: str) -> dict[str, Any]:
    """``patchscope ARGS`` in this process: its JSON result."""
    with _one_thread():
        r = invoke(*args)
    assert r.code == 0, r.err
    return json.loads(r.out)


def two(tmp_path: Path, kind: str | None, *args: str) -> dict[str, Any]:
    """``torchrun --nproc_per_node 2 -m patchscope ARGS``: its JSON result, printed once, with one run of ``kind``
    recorded (none where ``kind`` is None: the command records none)."""
    store = tmp_path / "two.db"
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "patchscope"]
        + list(args),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PATCHSCOPE_STORE": str(store)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "abort" not in r.stderr.lower(), r.stderr[-3000:]
    runs = RunStore(store).runs()
    assert [(run.kind, run.status) for run in runs] == ([(kind, "done")] if kind else [])  # rank 0 alone records
    return json.loads(r.stdout)  # one JSON document: rank 0 alone prints


def same(a: Any, b: Any, approx: frozenset[str] = frozenset(), key: str = "") -> None:
    """``a`` equals ``b`` exactly, except the keys in :data:`UNEQUAL` (left out) and numbers under a key in
    ``approx`` (within 0.03)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (key, a, b)
        for k in a.keys() - UNEQUAL:
            same(a[k], b[k], approx, k if key not in approx else key)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (key, a, b)
        for x, y in zip(a, b):
            same(x, y, approx, key)
    elif isinstance(a, float) and key in approx:
        assert b == pytest.approx(a, abs=0.03), (key, a, b)
    else:
        assert a == b, (key, a, b)


def test_evaluate(tmp_path: Path, tiny_model_path: Path):
    args = ("evaluate", "--models", str(tiny_model_path), "--data", "demo", "--patch", PATCH, "--limit", "40")
    args += ("--batch-size", "16", "--device", "cpu", "--json")
    single, double = one(*args), two(tmp_path, "evaluate", *args)
    same(single, double)
    assert (
        double["models"][str(tiny_model_path)]["images"] == 13
        and len(double["models"][str(tiny_model_path)]["conditions"]) == 33
    )


def test_transfer(tmp_path: Path, tiny_model_path: Path):
    other = tmp_path / "other.safetensors"  # a second model, as small
    other.write_bytes(tiny_model_path.read_bytes())
    other.with_suffix(".json").write_bytes(tiny_model_path.with_suffix(".json").read_bytes())
    args = ("transfer", "--patches", PATCH, "--models", f"{tiny_model_path},{other}", "--data", "demo")
    args += ("--limit", "40", "--device", "cpu", "--json")  # 40 images x 33 conditions: two batches of 1024 views
    single, double = one(*args), two(tmp_path, None, *args)
    same(single, double)


def test_certify(tmp_path: Path, tiny_model_path: Path):
    args = (
        "certify",
        "--defense",
        "patchcleanser",
        "--option",
        "k=3",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
    )
    args += ("--limit", "12", "--batch-size", "4", "--device", "cpu", "--json")  # three chunks of 4 images
    single, double = one(*args), two(tmp_path, "certify", *args)
    same(single, double)
    assert double["images"] == 12


def test_defend_adaptive(tmp_path: Path, tiny_model_path: Path):
    args = ("defend", "--defense", "bits", "--option", "bits=4", "--patch", PATCH, "--model", str(tiny_model_path))
    args += ("--data", "demo", "--limit", "8", "--batch-size", "16", "--adaptive", "--steps", "2")
    args += ("--attack-batch-size", "8")
    args += ("--device", "cpu", "--json")
    single = one(*args, "--out", str(tmp_path / "one"))
    double = two(tmp_path, "defend", *args, "--out", str(tmp_path / "two"))
    adaptive = (single.pop("adaptive"), double.pop("adaptive"))
    same(single, double)  # the given patch, with and without the defense: exact
    same(*adaptive, approx=frozenset(ATTACKED))
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["patch.png", "patch.safetensors"]


def test_curve(tmp_path: Path, tiny_model_path: Path):
    args = ("curve", "--model", str(tiny_model_path), "--data", "demo", "--eval-data", "demo", "--sizes", "0.05")
    args += ("--placements", "on-object", "--steps", "2", "--batch-size", "8", "--candidates", "1")
    args += ("--limit", "32", "--device", "cpu", "--json")  # 32 images x 33 conditions: two batches of 1024 views
    single = one(*args, "--out", str(tmp_path / "one"))
    double = two(tmp_path, "curve", *args, "--out", str(tmp_path / "two"))
    same(single, double, approx=frozenset(ATTACKED))
    assert json.loads((tmp_path / "two" / "curve.json").read_text())["on-object"]["rows"] == double["on-object"]["rows"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["area.png", "curve.json"]
