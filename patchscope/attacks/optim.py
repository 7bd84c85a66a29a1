"""The gradient attacks' optimisers: Adam or signed steps (:class:`SignSGD`), under a cosine learning rate.

>>> import torch
>>> cfg = AttackConfig(optimizer="sign", lr=0.5, steps=10)
>>> patch = torch.zeros(3, requires_grad=True)
>>> opt = optimiser(patch, cfg)
>>> patch.sum().backward()
>>> opt.step()
>>> patch.tolist(), cosine_lr(cfg, 0), round(cosine_lr(cfg, 10), 3)
([-0.5, -0.5, -0.5], 0.5, 0.025)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, overload

import torch

from patchscope.attacks.config import AttackConfig


class SignSGD(torch.optim.Optimizer):
    """Signed-gradient steps (the patch analogue of PGD): ``p -= lr * sign(grad)``."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One signed step of every parameter with a gradient; ``closure``, if given, re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
        return loss


def optimiser(patches: torch.Tensor, config: AttackConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The ``config``'s optimiser over ``patches`` (a leaf tensor that requires grad); ``fused``: Adam in one kernel a
    step (on a GPU)."""
    if config.optimizer == "sign":
        return SignSGD([patches], lr=config.lr)
    return torch.optim.Adam([patches], lr=config.lr, fused=fused or None)


def cosine_lr(config: AttackConfig, step: int) -> float:
    """The learning rate at ``step``: cosine from ``lr`` down to 5% of it at ``steps``."""
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / config.steps)))
