"""Adversarial patch training (Rao et al. 2020): train on images that carry patches optimised on the fly.

:class:`PatchAdversary` is the perturbation that :func:`patchscope.models.train.train_model` applies
to each training batch (``perturb=``): a square patch of ``area`` at a random place on each chosen
image, its pixels optimised by ``steps`` signed-gradient steps to raise the model's loss. One batched
pass per step, no per-image loop. Rao et al. also search the location; we sample it at random (their
ablation shows random locations give most of the benefit at a fraction of the cost).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from patchscope.attacks.patch import patch_side
from patchscope.defenses.patchcleanser import FILL, mask_set
from patchscope.defenses.smoothing import ablation_set
from patchscope.errors import PatchscopeError
from patchscope.models.train import square_masks


def random_square_masks(
    n: int, side: int, size: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """(N,1,H,W) bool masks, one ``side``-pixel square at a uniformly random place per image.

    >>> random_square_masks(4, 7, 32).sum((1, 2, 3)).tolist()
    [49, 49, 49, 49]
    """
    y0 = torch.randint(0, size - side + 1, (n, 1, 1), generator=generator).to(device)
    x0 = torch.randint(0, size - side + 1, (n, 1, 1), generator=generator).to(device)
    return square_masks(y0, x0, side, size, size).unsqueeze(1)


@dataclass
class PatchAdversary:
    """Per-image adversarial patches for training: ``adversary(model, x, y, generator) -> x_adv``.

    ``fraction`` of each batch (the first images) gets a patch; the rest stays clean, so the model keeps
    its clean accuracy. Untargeted: each patch maximises the cross-entropy of the true label.

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"])
    >>> x = torch.rand(4, 3, 32, 32)
    >>> PatchAdversary(area=0.05, steps=2)(m, x, torch.tensor([0, 1, 2, 0])).shape
    torch.Size([4, 3, 32, 32])
    """

    area: float = 0.05
    steps: int = 5
    step_size: float = 0.2
    fraction: float = 0.5

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        k = round(len(x) * self.fraction)
        if k == 0 or self.steps < 1:
            return x
        side = patch_side(self.area, x.shape[-1])
        mask = random_square_masks(k, side, x.shape[-1], generator, x.device)
        patch = torch.rand(x[:k].shape, generator=generator).to(x.device)
        was_training = model.training
        model.eval()
        for _ in range(self.steps):
            patch.requires_grad_(True)
            loss = F.cross_entropy(model(torch.where(mask, patch, x[:k])), y[:k])
            (grad,) = torch.autograd.grad(loss, patch)
            patch = (patch.detach() + self.step_size * grad.sign()).clamp_(0, 1)
        model.train(was_training)
        return torch.cat([torch.where(mask, patch.detach(), x[:k]), x[k:]])

    def describe(self) -> dict[str, Any]:
        """The settings, for the model card."""
        return {"method": "rao2020-random-location", **asdict(self)}


@dataclass
class MaskAugment:
    """Certification-aware training: grey out two masks drawn from PatchCleanser's own mask sets.

    With probability ``p`` an image gets two masks (a random pair, as in the second round of double
    masking), drawn from the union of the mask sets for each patch area in ``areas`` (k per axis), so
    the model learns to classify exactly the images that certification shows it. With ``tries`` > 1
    each image gets the worst of ``tries`` random pairs (the highest loss, one batched no-grad pass):
    certification needs *every* pair right, so training where the model is weakest helps most (a cheap
    cousin of the greedy cutout of Saha et al. 2023).

    >>> aug = MaskAugment(areas=(0.024,), image_size=32)
    >>> aug(None, torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)).shape
    torch.Size([4, 3, 32, 32])
    """

    areas: tuple[float, ...] = (0.024, 0.048)
    image_size: int = 32
    k: int = 6
    p: float = 0.75
    tries: int = 1

    def __post_init__(self) -> None:
        self.masks = torch.cat([mask_set(self.image_size, patch_side(a, self.image_size), self.k) for a in self.areas])

    def __call__(
        self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        n, t, masks = len(x), self.tries if model is not None else 1, self.masks.to(x.device)
        pick = torch.randint(0, len(masks), (t, n, 2), generator=generator).to(x.device)
        on = (torch.rand(n, generator=generator) < self.p).to(x.device).view(n, 1, 1)
        covered = (masks[pick[..., 0]] | masks[pick[..., 1]]) & on  # (t, n, H, W)
        grey = torch.where(covered.unsqueeze(2), torch.full_like(x, FILL), x.unsqueeze(0))  # (t, n, C, H, W)
        if t == 1 or model is None:
            return grey[0]
        return grey[self._worst(model, grey, y), torch.arange(n, device=x.device)]

    @torch.no_grad()
    def _worst(self, model: nn.Module, grey: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Index (n,) of the pair with the highest loss for each image.

        One batched forward pass over ``grey`` (t, n, C, H, W).
        """
        t, n = grey.shape[:2]
        was_training = model.training
        model.eval()
        loss = F.cross_entropy(model(grey.flatten(0, 1)), y.repeat(t), reduction="none").view(t, n)
        model.train(was_training)
        return loss.argmax(0)

    def describe(self) -> dict[str, Any]:
        """The settings, for the model card."""
        return {
            "method": "patchcleanser-double-masks",
            "areas": list(self.areas),
            "k": self.k,
            "p": self.p,
            "tries": self.tries,
        }


@dataclass
class AblationAugment:
    """Training for derandomized smoothing (Levine & Feizi 2020): keep one random ablation of each image.

    With probability ``p`` an image keeps only one of :func:`ablation_set`'s regions (a band of ``band``
    columns, or a ``band`` x ``band`` block, wrapping around) and the rest turns grey, exactly as
    :func:`patchscope.defenses.ds_prediction_map` shows it; the smoothed classifier only ever sees such
    images, so the paper trains on them alone (``p=1``).

    >>> aug = AblationAugment(band=4, mode="column")
    >>> out = aug(None, torch.rand(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    >>> (out != 0.5).any(1).sum((1, 2)).tolist()  # 4 columns of 32 rows kept
    [128, 128]
    """

    band: int = 4
    mode: str = "column"
    image_size: int = 32
    p: float = 1.0

    def __post_init__(self) -> None:
        self.kept = ablation_set(self.image_size, self.band, self.mode)

    def __call__(
        self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        n, kept = len(x), self.kept.to(x.device)
        pick = torch.randint(0, len(kept), (n,), generator=generator).to(x.device)
        on = (torch.rand(n, generator=generator) < self.p).to(x.device).view(n, 1, 1)
        keep = kept[pick] | ~on
        return torch.where(keep.unsqueeze(1), x, torch.full_like(x, FILL))

    def describe(self) -> dict[str, Any]:
        """The settings, for the model card."""
        return {"method": "derandomized-smoothing-ablations", "mode": self.mode, "band": self.band, "p": self.p}


def training_perturbation(
    image_size: int,
    patch_training: float = 0.0,
    patch_steps: int = 5,
    mask_training: tuple[float, ...] = (),
    mask_tries: int = 1,
    ablation_training: str | None = None,
) -> PatchAdversary | MaskAugment | AblationAugment | None:
    """The batch perturbation of a training recipe: adversarial patches, PatchCleanser masks, ablations, or None.

    Args:
        image_size: the training images' side.
        patch_training: adversarial patch training's patch area (0: off).
        patch_steps: signed-gradient steps per training patch.
        mask_training: patch areas whose PatchCleanser masks grey out the images (empty: off).
        mask_tries: train on the worst of this many random mask pairs per image.
        ablation_training: ``column:B`` or ``block:B``: keep one random band or block of each image (None: off).

    Returns:
        The perturbation for :func:`patchscope.models.train.train_model`'s ``perturb``, or None.

    >>> training_perturbation(32, ablation_training="column:4").band
    4
    """
    names = ("patch_training", "mask_training", "ablation_training")
    if sum(bool(v) for v in (patch_training, mask_training, ablation_training)) > 1:
        raise PatchscopeError(
            "patch_training, mask_training and ablation_training are separate recipes: pick one", params=names
        )
    if ablation_training:
        mode, _, band = ablation_training.partition(":")
        if (
            mode not in ("column", "block")
            or not (band.isascii() and band.isdigit())
            or not 1 <= int(band) <= image_size
        ):
            raise PatchscopeError(
                f"ablation_training {ablation_training!r}: give column:B or block:B with 1 <= B <= {image_size}, "
                "e.g. column:4",
                params=("ablation_training",),
            )
        return AblationAugment(int(band), mode, image_size)
    if patch_training:
        patch_side(patch_training, image_size)
        return PatchAdversary(area=patch_training, steps=patch_steps)
    if mask_training:
        for a in mask_training:
            patch_side(a, image_size)
        if mask_tries < 1:
            raise PatchscopeError(f"mask_tries {mask_tries}: need at least 1", params=("mask_tries",))
        return MaskAugment(tuple(mask_training), image_size, tries=mask_tries)
    return None
