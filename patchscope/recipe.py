"""How a patch attack optimises: :class:`AttackRecipe`, the step settings every attack, the demo, the study and the
command line share (without torch, so the command line can read its defaults before any model loads).

>>> recipe = AttackRecipe(steps=20, batch_size=16)
>>> recipe.steps, recipe.candidates, recipe.loss
(20, 5, 'sigmoid')
>>> AttackRecipe(optimizer="lbfgs")
Traceback (most recent call last):
...
patchscope.errors.PatchscopeError: optimizer must be one of adam, sign, got 'lbfgs'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from patchscope.errors import PatchscopeError
from patchscope.validate import (
    MAX_BATCH,
    check_batch,
    check_choice,
    check_int,
    check_non_negative,
    check_positive,
    check_range,
)

#: the attack losses (``patchscope.attacks.losses`` implements them)
LOSSES = ("ce", "margin", "sigmoid")
OPTIMIZERS = ("adam", "sign")
PRECISIONS = ("fp32", "bf16")


@dataclass
class AttackRecipe:
    """How a patch is optimised: steps, batch, starting places, loss, optimiser, regularisers, seed and precision."""

    #: optimisation steps
    steps: int = 300
    #: images per step (the global batch, split across torchrun ranks)
    batch_size: int = 64
    #: places (on-object) or starts (sticker) optimised side by side
    candidates: int = 5
    #: random starts per place, side by side; the best is kept when the search ends
    restarts: int = 1
    #: the optimiser's step size
    lr: float = 0.3
    #: ``ce`` | ``margin`` | ``sigmoid``
    loss: str = "sigmoid"
    #: the margin loss's logit gap at which an image counts as won
    kappa: float = 5.0
    #: ``adam`` | ``sign``
    optimizer: str = "adam"
    #: total-variation weight
    tv_weight: float = 0.0
    #: non-printability weight
    nps_weight: float = 0.0
    #: the random seed of places, views and starts
    seed: int = 0
    #: torch.compile the render+model+loss step; the same patch up to float rounding
    compile: bool = False
    #: ``fp32`` | ``bf16`` (the model under bf16 autocast: a nearby patch, not the same one)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, LOSSES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("precision", self.precision, PRECISIONS)
        if isinstance(self.kappa, (int, float)) and self.kappa < 0:
            raise PatchscopeError(f"kappa {self.kappa}: the margin to win by cannot be negative", params=("kappa",))
        check_range("kappa", self.kappa, 0.0, 1e6)  # neither NaN nor inf, nor past what a float32 logit gap holds
        check_range("lr", self.lr, 0.0, 1e3)
        self.steps = check_positive("steps", self.steps, 10**7)
        self.batch_size = check_batch("batch_size", self.batch_size)
        self.candidates = check_positive("candidates", self.candidates, 1024)
        self.restarts = check_positive("restarts", self.restarts, 1024)
        if self.candidates * self.restarts * self.batch_size > MAX_BATCH * 16:
            raise PatchscopeError(
                f"batch_size x candidates x restarts must be <= {MAX_BATCH * 16} images per step, "
                f"got {self.batch_size} x {self.candidates} x {self.restarts}",
                params=("batch_size", "candidates", "restarts"),
            )
        check_non_negative("tv_weight", self.tv_weight)
        check_non_negative("nps_weight", self.nps_weight)
        self.seed = check_int("seed", self.seed, 0, 2**63 - 1)

    def recipe(self) -> dict[str, Any]:
        """The recipe's settings by name (also of a subclass: only the recipe's own fields)."""
        return {f.name: getattr(self, f.name) for f in fields(AttackRecipe)}

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, JSON-ready."""
        return asdict(self)


def recipe_default(name: str) -> Any:
    """The default of the recipe setting ``name``.

    >>> recipe_default("steps")
    300
    """
    return next(f.default for f in fields(AttackRecipe) if f.name == name)


def flat_settings(settings: Any) -> dict[str, Any]:
    """A settings dataclass's fields by name, with a nested recipe's fields in the recipe's place (as results files,
    the run store and reproduce lines keep them).

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Budget:
    ...     size: float = 0.05
    ...     recipe: AttackRecipe = field(default_factory=lambda: AttackRecipe(steps=5))
    >>> flat = flat_settings(Budget())
    >>> flat["size"], flat["steps"], "recipe" in flat
    (0.05, 5, False)
    """
    flat: dict[str, Any] = {}
    for name, value in vars(settings).items():
        flat |= value.recipe() if isinstance(value, AttackRecipe) else {name: value}
    return flat
