"""Training checkpoints: an interrupted run resumed from its checkpoint ends with the very weights of an
uninterrupted one; other settings, or a file that is not a checkpoint, are refused in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from patchscope.errors import Interrupted, PatchscopeError
from patchscope.models.resume import TrainCheckpoint
from patchscope.models.train import Recipe, train_model
from tests.conftest import messages, run_cli

RECIPE = Recipe.for_arch("cnn", epochs=3, batch_size=32, arch_kwargs={"width": 4}, val_fraction=0.1)


class StopAt:
    """A batch perturbation that leaves the batch alone and raises an interrupt at its ``n``-th call."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, model, x, y, generator=None):
        self.calls += 1
        if self.calls == self.n:
            raise Interrupted("", int(signal.SIGINT))
        return x


@pytest.fixture(scope="module")
def data(demo):
    return demo.head(96)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_after_an_interrupt_gives_the_uninterrupted_weights(data, tmp_path):
    straight, _ = train_model(data, RECIPE, progress=False)
    steps = -(-round(len(data) * 0.9) // RECIPE.batch_size)  # batches an epoch (about 90% of the images train)
    ckpt = TrainCheckpoint(tmp_path / "m.ckpt")
    with pytest.raises(Interrupted, match=r"checkpoint saved to .*m\.ckpt after epoch 1"):
        train_model(data, RECIPE, progress=False, perturb=StopAt(steps + 2), checkpoint=ckpt)
    resumed, card = train_model(data, RECIPE, progress=False, checkpoint=TrainCheckpoint(ckpt.path, resume=True))
    assert [h["epoch"] for h in card["history"]] == [1, 2, 3]
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupt_before_the_first_epoch_keeps_nothing(data, tmp_path):
    ckpt = TrainCheckpoint(tmp_path / "m.ckpt")
    with pytest.raises(Interrupted) as info:
        train_model(data, RECIPE, progress=False, perturb=StopAt(1), checkpoint=ckpt)
    assert str(info.value) == "" and not ckpt.path.exists()


def test_resume_refuses_other_settings_and_foreign_files(data, tmp_path):
    ckpt = TrainCheckpoint(tmp_path / "m.ckpt", identity={"data_hash": "abc"})
    train_model(
        data, Recipe.for_arch("cnn", epochs=1, batch_size=32, arch_kwargs={"width": 4}), progress=False, checkpoint=ckpt
    )
    again = TrainCheckpoint(ckpt.path, resume=True, identity={"data_hash": "abc"})
    with pytest.raises(PatchscopeError, match="made with epochs 1, not 3"):
        train_model(data, RECIPE, progress=False, checkpoint=again)
    other = TrainCheckpoint(ckpt.path, resume=True, identity={"data_hash": "xyz"})
    with pytest.raises(PatchscopeError, match="made with data_hash abc, not xyz"):
        train_model(
            data,
            Recipe.for_arch("cnn", epochs=1, batch_size=32, arch_kwargs={"width": 4}),
            progress=False,
            checkpoint=other,
        )
    torch.save({"patches": torch.zeros(1)}, tmp_path / "attack.pt")
    with pytest.raises(PatchscopeError, match="not a training checkpoint"):
        train_model(data, RECIPE, progress=False, checkpoint=TrainCheckpoint(tmp_path / "attack.pt", resume=True))


def test_the_command_line_keeps_a_checkpoint_on_ctrl_c_and_resumes(tmp_path):
    args = [
        "train",
        "--arch",
        "cnn",
        "--arch-kwargs",
        '{"width": 4}',
        "--data",
        "demo",
        "--epochs",
        "40",
        "--name",
        "m",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
        "--batch-size",
        "64",
    ]
    proc = subprocess.Popen([sys.executable, "-m", "patchscope", *args], stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "m.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(messages(err)) == 1 and f"checkpoint saved to {ckpt} after epoch" in err and "rerun with --resume" in err
    assert ckpt.exists() and not (tmp_path / "m.safetensors").exists()
    changed = run_cli(*[a if a != "40" else "41" for a in args], "--resume")
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1, changed.stderr
    assert "resume: the checkpoint was made with epochs 40, not 41" in changed.stderr
    done = run_cli(*[a if a != "40" else "2" for a in args])  # without --resume: a fresh run (2 epochs)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.safetensors").exists() and not ckpt.exists()  # the model written, its checkpoint gone
