"""`Attack`: what every registered attack shares, in torchattacks' shape: ``attack(images, labels)``.

The base class takes the model, the :class:`~patchscope.attacks.config.AttackConfig` and the device; a call freezes
the model for its duration (:func:`~patchscope.attacks.frozen.frozen`: the caller's model is left exactly as it was),
checks the images and the target, moves them to the device and hands them to :meth:`Attack.run`, the one method a
subclass writes. :meth:`Attack.bar` and :meth:`Attack.record` keep the loop's books: the progress bar and
``history`` (one entry every 10 steps).

>>> import torch
>>> from patchscope.models.archs import cnn
>>> class Blank(Attack):
...     title = "blank patches"
...     def run(self, images, labels):
...         return torch.zeros_like(images[:, :, :4, :4])
>>> Blank(cnn(num_classes=2, width=4), AttackConfig(target=1))(torch.rand(2, 3, 8, 8), torch.zeros(2)).shape
torch.Size([2, 3, 4, 4])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from patchscope.attacks.config import AttackConfig, check_target, refuse_unused
from patchscope.attacks.frozen import frozen
from patchscope.errors import PatchscopeError
from patchscope.progress import Update, progress_bar

#: where an attack runs
Device = str | torch.device


class Attack:
    """A patch attack on ``model`` with ``config``, called as ``attack(images, labels)``.

    Args:
        model: the caller's classifier (logits out, float images in [0,1] in); never changed.
        config: the attack's settings.
        device: where the images go and the attack runs (the model must be there already).
        progress: show a progress bar.

    Subclasses set :attr:`title` (the progress bar's label), :attr:`makes` (what it makes, for errors),
    :attr:`refuses` (settings of ``config`` that must stay unset) and write :meth:`run`.
    """

    title: ClassVar[str] = "attack"
    makes: ClassVar[str] = "patches"
    refuses: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module, config: AttackConfig, device: Device = "cpu", progress: bool = True) -> None:
        if self.refuses:
            refuse_unused(config, self.refuses, self.makes)
        self.target_model, self.cfg, self.device, self.progress = model, config, torch.device(device), progress
        self.model: nn.Module = model  # while attacking: the frozen, BN-folded model (see :func:`frozen`)
        self.history: list[dict[str, float | None]] = []

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Any:
        """Attack ``images`` (N, 3, H, H) float in [0,1] with true ``labels`` (N,); what comes back is the subclass's
        patch (see :meth:`run`). The model is frozen meanwhile and restored afterwards, also on an error."""
        with frozen(self.target_model) as self.model:
            images, labels = self.inputs(images, labels)
            return self.run(images, labels)

    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` and ``labels`` on the device, once they are a non-empty batch of square RGB images and the
        config's target is one the model has and not the class of every image."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2] or len(images) == 0:
            raise PatchscopeError(f"the attack needs square RGB images (N, 3, H, H), got {tuple(images.shape)}")
        images, labels = images.to(self.device), labels.to(self.device)
        check_target(self.model, self.cfg.target, labels)
        return images, labels

    def run(self, images: torch.Tensor, labels: torch.Tensor) -> Any:
        """The attack itself, on checked ``images`` and ``labels`` on the device, with ``self.model`` frozen."""
        raise NotImplementedError

    def stopped(self) -> bool:
        """Whether the caller asked the attack to end now, keeping what it has made so far: attacks that can (the
        per-image attack) read it once a step. Never, unless a subclass says otherwise (an interactive front end)."""
        return False

    def generator(self) -> torch.Generator:
        """A fresh generator on the device, seeded with the config's ``seed``: the same seed makes the same patch."""
        return torch.Generator(device=self.device).manual_seed(self.cfg.seed)

    @contextlib.contextmanager
    def bar(self, total: int, show: bool = True) -> Iterator[Update]:
        """The progress bar of a ``total``-step loop (``show`` False, or ``progress`` off: none)."""
        with progress_bar(total, self.title, self.progress and show) as update:
            yield update

    def record(self, step: int, total: int, loss: torch.Tensor, wins: torch.Tensor, per: float, update: Update) -> None:
        """Every 10 steps and at the last: read the loss and the wins (one copy off the device), refuse a non-finite
        loss, add a history entry (``batch_success`` = ``wins`` / ``per``) and advance the bar."""
        if step % 10 and step != total - 1:
            return
        value, won = torch.stack([loss.detach().float(), wins.detach().float()]).tolist()
        if not math.isfinite(value):
            raise PatchscopeError(
                f"the attack's loss became NaN or inf at step {step}: the model produced non-finite outputs"
            )
        rate = won / per
        self.history.append({"step": step, "loss": value, "batch_success": rate})
        update(advance=min(10, total - step) if step % 10 == 0 else 0, loss=value, success=rate)
