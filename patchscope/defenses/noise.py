"""Gaussian noise: the classifier sees its input plus fresh noise of standard deviation ``sigma`` (a randomised
preprocessing defense that drowns a patch's fine structure). Differentiable: adaptive attacks need no BPDA, and an EOT
attacker averages over the noise.

>>> import torch
>>> from patchscope.models import create_model
>>> model = create_model("gtsrb-cnn")
>>> GaussianNoiseDefense(model, sigma=0.1)(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 43])
"""

from __future__ import annotations

import torch
from torch import nn

from patchscope.defenses.preprocess import InputDefense
from patchscope.defenses.registry import register_defense
from patchscope.errors import PatchscopeError


@register_defense("gaussian-noise")
class GaussianNoiseDefense(InputDefense):
    """Additive Gaussian noise (images in [0,1]), clamped back to [0,1].

    Args:
        sigma: the noise's standard deviation.
    """

    def __init__(self, model: nn.Module, sigma: float = 0.1, bpda: bool = False) -> None:
        super().__init__(model, bpda)
        if not sigma > 0:
            raise PatchscopeError(f"sigma {sigma} must be positive", params=("sigma",))
        self.sigma = float(sigma)

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) -> (N,3,H,W): ``x + sigma * noise``, fresh noise every call."""
        return (x + self.sigma * torch.randn_like(x)).clamp(0, 1)
