"""Build an empirical defense by name: ``create_defense("median", model, bpda=True, kernel=3)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from patchscope.defenses.clipping import ActivationClipping
from patchscope.defenses.preprocess import BitDepthDefense, BlurDefense, JpegDefense, LocalGradientSmoothing, MedianDefense
from patchscope.errors import PatchscopeError

EMPIRICAL = ("jpeg", "blur", "median", "bits", "lgs", "clip")
CERTIFIED = ("patchcleanser", "ds-column", "ds-block")
_INPUT = {"jpeg": JpegDefense, "blur": BlurDefense, "median": MedianDefense, "bits": BitDepthDefense, "lgs": LocalGradientSmoothing}


def create_defense(name: str, model: nn.Module, bpda: bool = False, clean_images: torch.Tensor | None = None, **options: Any) -> nn.Module:
    """``model`` wrapped in the named defense; ``options`` go to its constructor (None values are dropped).

    ``clip`` measures its bounds on ``clean_images`` (N,3,H,W) (options ``stages``, ``quantile``);
    ``bpda`` matters for the input defenses only (clipping is differentiable).

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> d = create_defense("bits", Classifier(cnn(num_classes=2, width=4), ["a", "b"]), bits=3)
    >>> d.name, d(torch.rand(1, 3, 32, 32)).shape
    ('model+bits', torch.Size([1, 2]))
    """
    options = {k: v for k, v in options.items() if v is not None}
    if name == "clip":
        if clean_images is None:
            raise PatchscopeError("the clip defense needs clean images to measure its bounds")
        return ActivationClipping.fit(model, clean_images, **options).eval()
    if name not in _INPUT:
        raise PatchscopeError(f"unknown defense {name!r}: choose from {', '.join(EMPIRICAL)}")
    try:
        return _INPUT[name](model, bpda=bpda, **options).eval()
    except TypeError as e:
        raise PatchscopeError(f"defense {name}: {e}") from None
