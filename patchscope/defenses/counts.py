"""What a certifier finds on a batch: per image (:class:`CertOutcomes`: right without the defense, right with it,
certified, the defended prediction) or counted (:class:`CertCounts`), and the forward passes it took.

>>> import torch
>>> c = CertCounts.of(torch.tensor([True, True]), torch.tensor([True, False]), torch.tensor([False, False]), 8)
>>> int(c.right), int(c.robust), int(c.certified), c.passes, c.stacked().tolist()
(2, 1, 0, 8, [2, 1, 0])
>>> o = CertOutcomes(torch.tensor([True]), torch.tensor([True]), torch.tensor([False]), torch.tensor([3]), 4)
>>> o.counts().stacked().tolist(), o.passes
([1, 1, 0], 4)
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class CertCounts(NamedTuple):
    """One batch's counts; the three counts are 0-dim long tensors on the batch's device (summed there, without a
    host round-trip per batch).

    Attributes:
        right: images the bare model classifies right.
        robust: images the defended prediction gets right.
        certified: images certified against every patch of the side.
        passes: the model's forward passes, all images together.
    """

    right: torch.Tensor
    robust: torch.Tensor
    certified: torch.Tensor
    passes: int

    @classmethod
    def of(cls, right: torch.Tensor, robust: torch.Tensor, certified: torch.Tensor, passes: int) -> CertCounts:
        """Counts from per-image booleans ``(N,)``."""
        return cls(right.sum(), robust.sum(), certified.sum(), int(passes))

    def stacked(self) -> torch.Tensor:
        """``(3,)`` long: right, robust, certified."""
        return torch.stack([self.right, self.robust, self.certified])


class CertOutcomes(NamedTuple):
    """One batch's outcomes per image, ``(N,)`` tensors on the batch's device.

    Attributes:
        right: bool, the bare model classifies the image right.
        robust: bool, the defended prediction is right.
        certified: bool, certified against every patch of the side.
        prediction: long, the defended prediction.
        passes: the model's forward passes, all images together.
    """

    right: torch.Tensor
    robust: torch.Tensor
    certified: torch.Tensor
    prediction: torch.Tensor
    passes: int

    def counts(self) -> CertCounts:
        """The outcomes counted."""
        return CertCounts.of(self.right, self.robust, self.certified, self.passes)
