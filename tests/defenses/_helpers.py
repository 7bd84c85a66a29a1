"""Small models and inputs shared by the defense tests."""

from __future__ import annotations

import torch
from torch import nn

from patchscope.models.archs import cnn
from patchscope.models.wrapper import Classifier


def small_cnn(classes: int = 3, seed: int = 0) -> Classifier:
    """The zoo CNN at width 4 (32px input), random weights, eval mode."""
    torch.manual_seed(seed)
    return Classifier(
        cnn(num_classes=classes, width=4, hidden=16), [f"c{i}" for i in range(classes)], 32, name="small"
    ).eval()


def local_net(size: int = 12, classes: int = 3, seed: int = 0) -> Classifier:
    """A tiny random net for ``size``px inputs: 3x3 convolutions then a global max, so a patch anywhere can flip it."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(6, classes)
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return Classifier(net, [f"c{i}" for i in range(classes)], size, name="local").eval()


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` images (n,3,size,size): flat colours plus mild noise and a soft blob, in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * 0.6 + 0.2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(n, 2, generator=g) * size
    blob = torch.exp(-((yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2) / (size**2 / 8))[:, None]
    return (
        base + 0.15 * blob * torch.randn(n, 3, 1, 1, generator=g) + 0.02 * torch.randn(n, 3, size, size, generator=g)
    ).clamp(0, 1)


def all_patched(image: torch.Tensor, side: int, random_per_location: int = 2, seed: int = 0) -> torch.Tensor:
    """``image`` (3,n,n) with a ``side`` patch at every location: all-0, all-1 and random pixels, (L*(2+r),3,n,n)."""
    n = image.shape[-1]
    g = torch.Generator().manual_seed(seed)
    tops = torch.arange(n - side + 1)
    top, left = torch.cartesian_prod(tops, tops).unbind(1)
    ax = torch.arange(n)
    rows = (ax[None] >= top[:, None]) & (ax[None] < top[:, None] + side)
    cols = (ax[None] >= left[:, None]) & (ax[None] < left[:, None] + side)
    window = (rows[:, :, None] & cols[:, None, :])[:, None]  # (L, 1, n, n)
    fills = [torch.zeros(1, 3, n, n), torch.ones(1, 3, n, n)] + [
        torch.rand(len(top), 3, n, n, generator=g) for _ in range(random_per_location)
    ]
    return torch.cat([torch.where(window, f, image) for f in fills])
