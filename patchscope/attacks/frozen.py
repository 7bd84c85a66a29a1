"""Attacks leave the caller's model as they found it: :func:`frozen` is the one place that changes it, for a while.

>>> import torch
>>> from patchscope.models.archs import cnn
>>> net = cnn(num_classes=2, width=4).train()
>>> with frozen(net) as model:
...     model.training, any(p.requires_grad for p in net.parameters())
(False, False)
>>> net.training, all(p.requires_grad for p in net.parameters())
(True, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from patchscope.models.fold import fold_batchnorm


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with no parameter gradients, as the attack's model (BatchNorm folded into the convolution
    before it, on a copy); on exit every module's training mode and every parameter's ``requires_grad`` are restored.

    Args:
        model: the caller's classifier; its weights are never written.

    Yields:
        The model to attack: ``model`` itself, or a BN-folded copy of it.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        folded = fold_batchnorm(model)
        for p in folded.parameters():  # a folded copy has new convolution weights: frozen as well
            p.requires_grad_(False)
        yield folded
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
