"""Optimise a patch where it was placed by hand: the per-image attack (:class:`~patchscope.attacks.PerImageAttack`)
on one image, at the placed patch's place and size, from its pixels; progress reported, stoppable at any step
(what was made so far is kept), the result measured over the default viewing grid and saved as a run.

>>> import torch
>>> from patchscope.models import Classifier
>>> from patchscope.models.archs import cnn
>>> from patchscope.explore.scene import Placement, blank_patch
>>> m = Classifier(cnn(num_classes=3, width=4, hidden=8), ["a", "b", "c"]).eval()
>>> start = upright_patch(blank_patch(32), Placement(16.0, 16.0, scale=0.8), 32)
>>> out = optimise_here(m, torch.rand(3, 32, 32), 0, start, OptimiseSettings(target=1, steps=3, views=2))
>>> out.patch.location, out.steps, out.stopped
((12, 12), 3, False)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from patchscope.attacks.config import AttackConfig
from patchscope.attacks.eot import NO_CHANGE, ViewRanges
from patchscope.attacks.patch import Patch
from patchscope.attacks.per_image import PerImageAttack
from patchscope.eval.conditions import DEFAULT_GRID
from patchscope.eval.patch_metrics import patch_success
from patchscope.explore.scene import Placement
from patchscope.io import write_json
from patchscope.models.wrapper import Classifier
from patchscope.runs.reproduce import command_line
from patchscope.runs.store import RunStore, record
from patchscope.validate import check_int, check_range


@dataclass(frozen=True)
class OptimiseSettings:
    """How to optimise: the ``target`` class (None: any other class), ``steps``, EOT ``views`` of the image per step,
    the learning rate, the seed, and whether the views vary (``eot``: the attacks' default ranges; else the still
    view only)."""

    target: int | None
    steps: int = 100
    views: int = 8
    lr: float = 0.1
    seed: int = 0
    eot: bool = True

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1, 5000)
        check_int("views", self.views, 1, 256)
        check_range("lr", self.lr, 0.0, 10.0, low_open=True)

    def config(self, start: Patch) -> AttackConfig:
        """The attack's settings for ``start`` (an on-object patch with a location)."""
        return AttackConfig(
            size=min(start.area_fraction, 0.99),
            placement="on-object",
            location=start.location,
            target=self.target,
            lr=self.lr,
            steps=self.steps,
            batch_size=max(self.views, 8),
            candidates=1,
            ranges=ViewRanges() if self.eot else NO_CHANGE,
            seed=self.seed,
        )


@dataclass(frozen=True)
class Progress:
    """Where an optimisation is: ``step`` of ``steps`` done, the mean loss and the share of views won."""

    step: int
    steps: int
    loss: float
    success: float


@dataclass(frozen=True)
class Optimised:
    """What :func:`optimise_here` made: the ``patch`` (on-object, at its place), the steps it took, whether it was
    stopped early, the attack's ``history``, its ``config``, and its success on the image over the default viewing
    grid (``targeted_success`` None without a target)."""

    patch: Patch
    steps: int
    stopped: bool
    seconds: float
    config: AttackConfig
    targeted_success: float | None
    untargeted_success: float
    history: list[dict[str, float | None]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The run's metrics (as an attack run records them)."""
        return {
            "attack_images": 1,
            "targeted_success": self.targeted_success,
            "untargeted_success": self.untargeted_success,
            "patch_area": self.patch.area_fraction,
            "patch_side": self.patch.side,
            "location": list(self.patch.location or ()),
            "steps_done": self.steps,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 1),
            "history": self.history,
        }


def upright_patch(patch: Patch, placement: Placement, image_size: int) -> Patch:
    """``patch`` as the per-image attack starts from it: upright, resized to its placed size (at least 2 px, at most
    the image), on-object at the whole-pixel place nearest its placed centre, kept on the image."""
    side = min(image_size, max(2, round(patch.side * placement.scale)))
    pixels = F.interpolate(patch.pixels[None].float(), (side, side), mode="bilinear", antialias=True)[0]
    mask = F.interpolate(patch.mask[None, None].float(), (side, side), mode="nearest")[0, 0]
    if float(mask.sum()) == 0:
        mask = torch.ones(side, side)
    free = image_size - side
    top = min(free, max(0, round(placement.row - side / 2)))
    left = min(free, max(0, round(placement.col - side / 2)))
    meta = {**patch.meta, "start": patch.meta.get("name")}
    return Patch(pixels.clamp(0, 1), mask, "on-object", (top, left), image_size, meta)


class _Watched(PerImageAttack):
    """The per-image attack, reporting each logged step to ``on_progress`` and ending when ``stop()`` says so."""

    def __init__(
        self,
        *args: Any,
        on_progress: Callable[[Progress], None] | None,
        stop: Callable[[], bool] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.on_progress, self.stop, self.done = on_progress, stop, 0

    def stopped(self) -> bool:
        return self.stop is not None and self.stop()

    def record(self, step: int, total: int, loss: torch.Tensor, wins: torch.Tensor, per: float, update: Any) -> None:
        self.done = step + 1
        before = len(self.history)
        super().record(step, total, loss, wins, per, update)
        if self.on_progress is not None and len(self.history) > before:
            last = self.history[-1]
            self.on_progress(Progress(step + 1, total, float(last["loss"] or 0.0), float(last["batch_success"] or 0.0)))


def optimise_here(
    model: Classifier,
    image: torch.Tensor,
    label: int,
    start: Patch,
    settings: OptimiseSettings,
    on_progress: Callable[[Progress], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Optimised:
    """Optimise ``start`` (from :func:`upright_patch`) on ``image`` (3, H, H) in [0, 1] of class ``label``.

    Args:
        model: the classifier; left as it was (the attack works on a frozen copy's view of it).
        image: the image.
        label: its class (the one the patch should move it away from).
        start: the patch to start from, on-object at its place.
        settings: target, steps, views.
        on_progress: called every ten steps and at the last, with a :class:`Progress`.
        stop: asked once a step; True ends the attack there, keeping the patch so far.

    Returns:
        An :class:`Optimised`, measured on the image over the default viewing grid.
    """
    cfg = settings.config(start)
    attack = _Watched(model, cfg, views=settings.views, progress=False, start=start, on_progress=on_progress, stop=stop)
    x, y = image[None].float(), torch.tensor([label])
    began = time.monotonic()
    made = attack(x, y)
    seconds = time.monotonic() - began
    loc = made.location[0].round().long().tolist() if made.location is not None else list(start.location or (0, 0))
    meta = {**start.meta, "config": cfg.as_dict(), "views": settings.views, "made_by": "explore"}
    patch = Patch(
        made.pixels[0].cpu(), made.mask.cpu(), "on-object", (int(loc[0]), int(loc[1])), start.image_size, meta
    )
    measured = patch_success(model, x, y, patch, settings.target, DEFAULT_GRID)
    return Optimised(
        patch,
        attack.done,
        attack.done < settings.steps,
        seconds,
        cfg,
        measured.targeted_success if settings.target is not None else None,
        measured.untargeted_success,
        list(attack.history),
    )


@dataclass(frozen=True)
class SavedRun:
    """A saved optimisation: the run's ``id`` in the store, its ``folder`` and the commands that use it."""

    id: int
    folder: Path
    commands: list[str]


def save_run(
    result: Optimised, store: RunStore, folder: Path, facts: Mapping[str, Any], data: str | None = None
) -> SavedRun:
    """Record ``result`` in ``store`` as an attack run and write its folder (``folder``/RUN_ID: the patch,
    ``config.json``, ``metrics.json``).

    Args:
        result: from :func:`optimise_here`.
        store: the run store.
        folder: where run folders go (one sub-folder per run, named by its id).
        facts: what else the run records: ``model``, ``source``, ``target`` (names), the image, ...
        data: the data spec the image came from (None: an uploaded image), for the commands.

    Returns:
        A :class:`SavedRun`.
    """
    config = {"command": "explore", "attack": "per-image", **_plain(result.config.as_dict()), **facts}
    model = str(facts.get("model", ""))
    commands = []
    with record(store, "attack", config, command="patchscope explore") as run:
        out = folder / str(run.id)
        out.mkdir(parents=True, exist_ok=True)
        result.patch.save(out)
        write_json(out / "config.json", config)
        write_json(out / "metrics.json", result.metrics())
        run.log(result.metrics())
        run.artifact("patch", out / "patch.safetensors")
        commands = _commands(model, data, out, facts)
        run.log(reproduce=commands)
    return SavedRun(run.id, out, commands)


def _commands(model: str, data: str | None, out: Path, facts: Mapping[str, Any]) -> list[str]:
    """The commands that look at the saved patch again and measure it on its class."""
    look = command_line("explore", {"model": model, "data": data, "patch": out})
    if data is None or facts.get("source") is None:
        return [look]
    measure = {"models": model, "data": data, "patch": out, "source": facts["source"], "target": facts.get("target")}
    return [look, command_line("evaluate", measure)]


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as JSON holds them: the view ranges flat, non-finite numbers as None."""
    ranges = settings.pop("ranges", None)
    out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in settings.items()}
    if isinstance(ranges, dict):
        out["ranges"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ranges.items()}
    return out
