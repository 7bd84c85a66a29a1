"""Per-sign lighting: each sign's own light, estimated from its pixels, put on the patch before it is pasted.

The uniform viewing grid pastes the patch with its digital colours on a sign photographed in whatever light it
was, then changes the brightness of the whole picture. A printed sticker is lit like the sign it is on: in a dark
photograph the sticker is dark too. Following REAP (Hingun et al., 2023), each sign's lighting is estimated as a
per-channel gain and offset that maps the class's typical sign to this one, and the patch is shown under it
(:func:`~patchscope.attacks.eot.relight`) before the same viewing conditions apply.

The typical sign is measured over a set of images of the class (the training set's, say): the per-channel mean and
spread of the pixels inside the sign (a centred disc, clear of the background in the corners of a sign's bounding
box), averaged over the images. A sign whose pixels have mean ``m`` and spread ``s`` where the typical sign has
``m0`` and ``s0`` gets gain ``s / s0`` and offset ``m - gain * m0``: a sign seen under a light that scales its
colours by ``a`` and adds ``b`` gets exactly ``a`` and ``b`` relative to its own appearance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from patchscope.errors import PatchscopeError

#: the radius of the disc the lighting is read in, as a share of the image's side
SIGN_RADIUS = 0.45


def sign_region(size: int, radius: float = SIGN_RADIUS) -> torch.Tensor:
    """A (size, size) bool mask: the centred disc of ``radius`` x ``size`` pixels where a sign fills its crop.

    >>> sign_region(32).float().mean().round(decimals=2)
    tensor(0.6300)
    """
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy - c) ** 2 + (xx - c) ** 2) <= (radius * size) ** 2


def _channel_stats(images: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel, the mean and the standard deviation of the pixels in ``region``: two (N, 3)."""
    x = images[:, :, region.to(images.device)]  # (N, 3, P)
    return x.mean(-1), x.std(-1, correction=0)


@dataclass(frozen=True)
class LightingReference:
    """The class's typical sign: per channel, the mean and the spread of a sign's pixels, averaged over ``images``
    images of ``size`` px (the disc of :func:`sign_region`)."""

    mean: torch.Tensor  # (3,)
    spread: torch.Tensor  # (3,)
    size: int
    images: int


def lighting_reference(images: torch.Tensor) -> LightingReference:
    """The typical sign of ``images`` (N, 3, H, H) in [0, 1], all of one class.

    >>> ref = lighting_reference(torch.rand(8, 3, 32, 32))
    >>> ref.mean.shape, ref.images
    (torch.Size([3]), 8)
    """
    if images.ndim != 4 or len(images) == 0 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise PatchscopeError(f"the lighting reference needs (N, 3, H, H) images, N >= 1, got {tuple(images.shape)}")
    mean, spread = _channel_stats(images.float(), sign_region(images.shape[-1]))
    return LightingReference(mean.mean(0).cpu(), spread.mean(0).cpu(), int(images.shape[-1]), len(images))


@dataclass(frozen=True)
class SignLighting:
    """Each sign's own lighting: ``gain`` and ``offset`` (N, 3), per channel, from the typical sign to this one."""

    gain: torch.Tensor
    offset: torch.Tensor

    def summary(self) -> dict[str, float]:
        """The gains' (mean over channels) 10th, 50th and 90th percentiles, and the offsets' mean."""
        g = self.gain.mean(1).float()
        q = torch.quantile(g, torch.tensor([0.1, 0.5, 0.9]))
        return {
            "gain_p10": float(q[0]),
            "gain_median": float(q[1]),
            "gain_p90": float(q[2]),
            "offset_mean": float(self.offset.mean()),
        }


def estimate_lighting(images: torch.Tensor, reference: LightingReference) -> SignLighting:
    """Each image's lighting against ``reference`` (see the module's docstring): ``images`` (N, 3, H, H).

    >>> ref = lighting_reference(torch.rand(16, 3, 32, 32))
    >>> x = torch.rand(4, 3, 32, 32) * 0.5
    >>> lit = estimate_lighting(x, ref)
    >>> lit2 = estimate_lighting(x * 1.5 + 0.1, ref)  # the same signs under a light 1.5 x brighter, + 0.1
    >>> torch.allclose(lit2.gain, lit.gain * 1.5) and torch.allclose(lit2.offset, lit.offset * 1.5 + 0.1, atol=1e-5)
    True
    """
    if images.shape[-1] != reference.size:
        raise PatchscopeError(
            f"the lighting reference was measured on {reference.size}px images, these are {images.shape[-1]}px"
        )
    mean, spread = _channel_stats(images.float(), sign_region(reference.size))
    gain = spread / reference.spread.to(spread).clamp_min(1e-6)
    return SignLighting(gain, mean - gain * reference.mean.to(mean))
