"""patchscope.distributed: each rank's share of the work covers every item once, and two gloo processes measure
exactly what one process measures (while each computes only part of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from patchscope import distributed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n,block,world", [(10, 4, 2), (10, 4, 3), (3, 4, 2), (0, 2, 2), (7, 1, 4), (33 * 8, 32, 2)])
def test_the_ranks_shares_cover_every_item_once(monkeypatch, n: int, block: int, world: int):
    blocks, ranges = [], []
    for rank in range(world):
        monkeypatch.setattr(distributed, "rank_world", lambda r=rank: (r, world))
        blocks.append(distributed.my_indices(n, block).tolist())
        ranges.append(list(distributed.my_range(n)))
        assert all(s % block == 0 for s in distributed.my_blocks(n, block))
    for shares in (blocks, ranges):
        assert sorted(i for share in shares for i in share) == list(range(n))
    assert [i for share in ranges for i in share] == list(range(n))  # contiguous shares, in rank order
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_one_process_is_the_whole_world():
    t = torch.arange(5)
    assert distributed.rank_world() == (0, 1) and distributed.is_main() and not distributed.active()
    assert distributed.all_sum(t) is t and distributed.gather_rows(t) is t and distributed.all_max(2.5) == 2.5
    assert list(distributed.my_blocks(5, 2)) == [0, 2, 4] and distributed.join("cpu") == 0


#: run by each of two torchrun processes: measure alone first, then joined, and compare
SCRIPT = r"""
import sys

import torch
from patchscope import distributed
from patchscope.attacks import Patch
from patchscope.data import load_data
from patchscope.workflows.certify import certify
from patchscope.eval.patch_metrics import patch_success
from patchscope.models.archs import cnn
from patchscope.models.train import accuracy
from patchscope.models.wrapper import Classifier

torch.manual_seed(0)
data = load_data("demo").head(24)
model = Classifier(cnn(num_classes=len(data.classes), width=4), data.classes).eval()
rows = []
model.register_forward_hook(lambda m, i, o: rows.append(len(o)))
x, y = data.float_images(), data.labels
pixels = torch.rand(3, 7, 7, generator=torch.Generator().manual_seed(1))
patch = Patch(pixels, torch.ones(7, 7), "sticker", None, 32, {})

def measure():
    rows.clear()
    out = {
        "success": patch_success(model, x, y, patch, 13, batch_size=64, by_image=True).as_dict(),
        "accuracy": accuracy(model, data, batch_size=5),
        "certify": certify(model, data, "ds-column", 0.05, batch_size=8, progress=False).as_dict(),
    }
    out["certify"].pop("seconds"), out["certify"].pop("images_per_second")
    return out, sum(rows)

alone, alone_rows = measure()
rank = distributed.join("cpu")
try:
    joined, joined_rows = measure()
    assert joined == alone, (joined, alone)
    assert 0 < joined_rows < alone_rows, (joined_rows, alone_rows)  # each rank computed only its share
    assert distributed.gather_rows(torch.arange(rank * 3, rank * 3 + 2 + rank)).tolist() == [0, 1, 3, 4, 5]
    assert distributed.all_max(float(rank)) == 1.0 and distributed.all_sum(torch.ones(2)).tolist() == [2.0, 2.0]
    sys.stdout.write(f"rank {rank} ok {joined_rows} of {alone_rows}\n")  # one write: the ranks share stdout
finally:
    distributed.leave()
"""


def test_two_gloo_processes_measure_what_one_does(tmp_path: Path):
    script = tmp_path / "measure.py"
    script.write_text(SCRIPT)
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(" ok ") == 2, r.stdout
