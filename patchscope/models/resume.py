"""Training checkpoints: the whole state after each epoch, so that an interrupted run resumes to the same model.

A checkpoint holds the network, its weight average, the optimiser and schedule, both random generators (the data
order's and torch's, which draws the augmentations), the epochs done, their history and the settings that shaped
them. It is written with ``torch.save`` and read with ``weights_only=True`` (tensors and plain containers only:
nothing in it can run code). Resuming with other settings is refused, naming the first difference.

>>> import tempfile, torch
>>> from pathlib import Path
>>> net = torch.nn.Linear(2, 2)
>>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
>>> parts = TrainingParts(net, net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), torch.Generator())
>>> ckpt = TrainCheckpoint(Path(tempfile.mkdtemp()) / "m.ckpt", resume=True)
>>> ckpt.save(parts, {"epochs": 3}, epoch=1, history=[{"epoch": 1}], seconds=2.0)
>>> ckpt.restore(parts, {"epochs": 3}).epoch
1
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from patchscope.errors import PatchscopeError
from patchscope.io import atomic_path
from patchscope.validate import check_same_settings

_KEYS = {"model", "average", "optimiser", "schedule", "generator", "torch_rng", "epoch", "history", "settings"}


@dataclass
class TrainingParts:
    """What a training loop changes as it runs: the model, its weight average, optimiser, schedule, data order."""

    model: torch.nn.Module
    average: torch.nn.Module
    optimiser: torch.optim.Optimizer
    schedule: Any
    generator: torch.Generator


@dataclass
class Resumed:
    """Where a resumed run starts: epochs already done, their history, seconds already spent."""

    epoch: int = 0
    history: list[dict[str, float | None]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class TrainCheckpoint:
    """Where to keep the training state, and whether to continue from it.

    Args:
        path: the checkpoint file (written after every epoch, atomically).
        resume: continue from ``path`` if it exists (a missing file starts afresh).
        identity: what else must match to resume (e.g. the data's hash, the initial model).
    """

    path: Path
    resume: bool = False
    identity: dict[str, Any] = field(default_factory=dict)

    def settings(self, recipe: dict[str, Any]) -> dict[str, Any]:
        """The settings a checkpoint records and compares: the recipe, then the identity (JSON values)."""
        return json.loads(json.dumps({**recipe, **{k: str(v) for k, v in self.identity.items()}}, default=str))

    def save(
        self, parts: TrainingParts, recipe: dict[str, Any], epoch: int, history: list[Any], seconds: float
    ) -> None:
        """Write the state after ``epoch`` epochs (replacing the previous checkpoint only once written)."""
        state = {
            "model": parts.model.state_dict(),
            "average": parts.average.state_dict(),
            "optimiser": parts.optimiser.state_dict(),
            "schedule": parts.schedule.state_dict(),
            "generator": parts.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "epoch": epoch,
            "history": json.dumps(history),
            "seconds": float(seconds),
            "settings": json.dumps(self.settings(recipe)),
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def restore(self, parts: TrainingParts, recipe: dict[str, Any]) -> Resumed:
        """Load the checkpoint into ``parts`` when resuming and one exists; where the run starts."""
        if not (self.resume and self.path.exists()):
            return Resumed()
        state = self._read()
        check_same_settings(json.loads(state["settings"]), self.settings(recipe))
        parts.model.load_state_dict(state["model"])
        parts.average.load_state_dict(state["average"])
        parts.optimiser.load_state_dict(state["optimiser"])
        parts.schedule.load_state_dict(state["schedule"])
        parts.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return Resumed(int(state["epoch"]), json.loads(state["history"]), float(state.get("seconds", 0.0)))

    def _read(self) -> dict[str, Any]:
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  any unreadable checkpoint is the user's file problem
            raise PatchscopeError(
                f"resume: checkpoint {self.path} is unreadable ({e.__class__.__name__})", params=("resume",)
            ) from None
        if not isinstance(state, dict) or not _KEYS <= set(state):
            raise PatchscopeError(f"resume: checkpoint {self.path} is not a training checkpoint", params=("resume",))
        return state
