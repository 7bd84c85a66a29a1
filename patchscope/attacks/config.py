"""What every patch attack shares: its settings (:class:`AttackConfig`), where candidates start, and the check that a
target makes sense for the model and the images.

>>> cfg = AttackConfig(size=0.1, target=1, steps=10)
>>> cfg.as_dict()["steps"], candidate_locations(3, 20).tolist()
(10, [[10.0, 10.0], [10.0, 4.0], [10.0, 16.0]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from patchscope.attacks.eot import PLACEMENTS, ViewRanges
from patchscope.attacks.printer import PrinterModel
from patchscope.errors import PatchscopeError
from patchscope.recipe import AttackRecipe
from patchscope.validate import check_choice, check_fraction, check_int, check_range


@dataclass
class AttackConfig(AttackRecipe):
    """Everything that decides a patch: how it is optimised (the :class:`~patchscope.recipe.AttackRecipe` fields)
    and what it is: its ``size`` (area share), ``shape``, ``placement``, a fixed ``location`` (None: searched),
    ``target`` (None: untargeted), the viewing ``ranges`` of EOT and the share of steps spent searching places."""

    size: float = 0.05
    shape: str = "square"
    placement: str = "on-object"
    location: tuple[int, int] | None = None
    target: int | None = None
    search_fraction: float = 0.3
    ranges: ViewRanges = field(default_factory=ViewRanges)
    printer: PrinterModel | None = None  # a calibrated printer: the patch is seen as printed, kept to its colours

    @classmethod
    def of(cls, recipe: AttackRecipe, **patch: Any) -> AttackConfig:
        """``recipe`` for the patch ``patch`` describes (``size``, ``placement``, ``target``, ...)."""
        return cls(**recipe.recipe(), **patch)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction("size", self.size)
        check_choice("placement", self.placement, PLACEMENTS)
        check_range("search_fraction", self.search_fraction, 0.0, 1.0)
        if self.target is not None:
            self.target = check_int("target", self.target, 0)
        if self.location is not None:
            if len(self.location) != 2:
                raise PatchscopeError(f"location must be (top, left), got {self.location!r}", params=("location",))
            self.location = (
                check_int("location top", self.location[0], 0),
                check_int("location left", self.location[1], 0),
            )

    def check_fits(self, image_size: int, side: int) -> None:
        """Refuse a fixed ``location`` that puts the ``side``-px patch (partly) off an ``image_size``-px image."""
        if self.location is not None and self.placement == "on-object":
            top, left = self.location
            free = image_size - side
            if top > free or left > free:
                raise PatchscopeError(
                    f"location must keep the {side}px patch on the {image_size}px image "
                    f"(top and left in 0..{free}), got {top},{left}",
                    params=("location",),
                )


def candidate_locations(n: int, free: int) -> torch.Tensor:
    """``n`` (top, left) starting places for on-object candidates, best guesses first: the centre, then
    the middles of the edges, then the corners of a grid at 20/50/80% of the free range (then random)."""
    ticks = torch.tensor([0.5, 0.2, 0.8]) * free
    grid = torch.cartesian_prod(ticks, ticks).round()
    order = ((grid - free / 2).abs().sum(1) + 1e-3 * torch.arange(len(grid))).argsort()
    grid = grid[order]
    if n > len(grid):
        extra = torch.randint(0, free + 1, (n - len(grid), 2), generator=torch.Generator().manual_seed(n)).float()
        grid = torch.cat([grid, extra])
    return grid[:n]


def check_target(model: nn.Module, target: int | None, labels: torch.Tensor) -> None:
    """A ``target`` class the model has, and not the class every attacked image already is."""
    classes = getattr(model, "classes", None)
    if target is None:
        return
    if classes is not None and target >= len(classes):
        raise PatchscopeError(f"target must be a class id in 0..{len(classes) - 1}, got {target}", params=("target",))
    if len(labels) and bool(
        (labels.detach().cpu().numpy() == target).all()
    ):  # numpy: no device sync inside the attack's trace
        name = f" ({classes[target]})" if classes is not None else ""
        raise PatchscopeError(
            f"target must differ from the class of the attacked images, got {target}{name} for both", params=("target",)
        )


def refuse_unused(config: AttackConfig, fields: tuple[str, ...], title: str) -> None:
    """Refuse ``config`` when any of ``fields`` (the universal attack's own settings) is set for the ``title`` attack.

    >>> refuse_unused(AttackConfig(tv_weight=0.1), ("tv_weight", "compile"), "per-image patches")
    Traceback (most recent call last):
    ...
    patchscope.errors.PatchscopeError: per-image patches: tv_weight and compile are the universal attack's only
    """
    if any(getattr(config, f) for f in fields):
        names = ", ".join(fields[:-1]) + " and " + fields[-1] if len(fields) > 1 else fields[0]
        raise PatchscopeError(
            f"{title}: {names} {'are' if len(fields) > 1 else 'is'} the universal attack's only", params=fields
        )
