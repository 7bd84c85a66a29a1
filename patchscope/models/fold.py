"""Fold eval-mode BatchNorm into the convolution before it: the same function with one layer fewer.

An attack (or any frozen-weight use) never updates batch statistics, so a ``Conv2d -> BatchNorm2d`` pair is one
affine map and can run as one convolution: the same logits up to float rounding, less work forward and backward.
"""

from __future__ import annotations

import copy
from typing import cast

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and not (conv.training or bn.training)
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


def _pairs(model: nn.Module) -> list[tuple[nn.Sequential, int]]:
    return [
        (seq, i)
        for seq in model.modules()
        if isinstance(seq, nn.Sequential)
        for i in range(len(seq) - 1)
        if _foldable(seq[i], seq[i + 1])
    ]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every ``Conv2d -> BatchNorm2d`` pair that sits side by side in an ``nn.Sequential``
    (both in eval mode, the BN with running statistics) is one ``Conv2d``; the original is left untouched. A model
    with nothing to fold (no BN, a ViT, or one in train mode) comes back as itself, uncopied.

    >>> import torch
    >>> from patchscope.models.archs import cnn
    >>> net = cnn(num_classes=3, width=4).eval()
    >>> folded = fold_batchnorm(net)
    >>> x = torch.rand(2, 3, 32, 32)
    >>> torch.allclose(folded(x), net(x), atol=1e-5), sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    (True, 0)
    """
    if not _pairs(model):
        return model
    folded = copy.deepcopy(model)
    for seq, i in _pairs(folded):
        conv, bn = cast(nn.Conv2d, seq[i]), cast(nn.BatchNorm2d, seq[i + 1])  # as _pairs checked
        seq[i] = fuse_conv_bn_eval(conv, bn)
        seq[i + 1] = nn.Identity()
    return folded
