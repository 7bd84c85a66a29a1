"""What a certifier counts on a batch: images right without the defense, right with it, certified, and the passes.

>>> import torch
>>> c = CertCounts.of(torch.tensor([True, True]), torch.tensor([True, False]), torch.tensor([False, False]), 8)
>>> int(c.right), int(c.robust), int(c.certified), c.passes, c.stacked().tolist()
(2, 1, 0, 8, [2, 1, 0])
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
