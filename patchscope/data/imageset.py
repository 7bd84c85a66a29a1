"""`ImageSet`: a whole labelled image set held as one uint8 tensor, batched on demand."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from patchscope.data.classes import resolve_class
from patchscope.errors import PatchscopeError
from patchscope.validate import check_positive


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, 3, H, W)`` uint8, labels ``(N,)`` int64, class names, optional track ids.

    >>> s = ImageSet(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 1, 0]), ("a", "b"), "toy")
    >>> len(s.of_class("b"))
    2
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    tracks: torch.Tensor | None = None
    _hash: list[str] = field(default_factory=list, repr=False, compare=False)
    skipped: tuple[str, ...] = ()  # unreadable files left out when it was read with ``skip_bad``

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise PatchscopeError(
                f"{self.name}: images must be uint8 (N, 3, H, W), got {tuple(self.images.shape)} {self.images.dtype}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise PatchscopeError(f"{self.name}: {self.images.shape[0]} images but {self.labels.shape[0]} labels")
        if len(self.labels) and (int(self.labels.max()) >= len(self.classes) or int(self.labels.min()) < 0):
            bad = int(self.labels.min()) if int(self.labels.min()) < 0 else int(self.labels.max())
            raise PatchscopeError(
                f"{self.name}: labels must be in 0..{len(self.classes) - 1} ({len(self.classes)} classes), got {bad}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, index: torch.Tensor) -> ImageSet:
        """The images at ``index`` (a bool mask or integer indices), same classes."""
        tracks = None if self.tracks is None else self.tracks[index]
        return ImageSet(self.images[index], self.labels[index], self.classes, self.name, tracks)

    def of_class(self, cls: str | int) -> ImageSet:
        """Only the images of one class (a name or an id)."""
        return self.subset(self.labels == resolve_class(cls, self.classes))

    def alternate(self) -> tuple[ImageSet, ImageSet]:
        """(even-indexed, odd-indexed) images: one half to make a patch on, the other to measure it, never the same.

        >>> a, b = ImageSet(torch.zeros(5, 3, 2, 2, dtype=torch.uint8), torch.arange(5), ["c"] * 5, "toy").alternate()
        >>> a.labels.tolist(), b.labels.tolist()
        ([0, 2, 4], [1, 3])
        """
        idx = torch.arange(len(self))
        return self.subset(idx[0::2]), self.subset(idx[1::2])

    def head(self, n: int | None, name: str = "limit") -> ImageSet:
        """The first ``n`` images (all when ``n`` is None); ``n`` must be at least 1 (``name`` names it in errors)."""
        if n is None:
            return self
        n = check_positive(name, n)
        return self if n >= len(self) else self.subset(torch.arange(n))

    def float_images(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """All images as float in [0, 1] on ``device``, ``(N, 3, H, W)``."""
        return self.images.to(device).float().div_(255)

    def batches(
        self, batch_size: int, device: str | torch.device = "cpu"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images float [0,1] (B,3,H,W), labels (B,))`` in order, on ``device``."""
        for start in range(0, len(self), batch_size):
            x = self.images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
            yield x, self.labels[start : start + batch_size].to(device, non_blocking=True)

    def iter_batches(
        self, batch_size: int, device: str | torch.device = "cpu", workers: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """As :meth:`batches`; the signature :class:`~patchscope.data.stream.ImageStream` shares.

        ``workers`` is unused.
        """
        return self.batches(batch_size, device)

    def load(self) -> ImageSet:
        """Itself: already in memory (an :class:`~patchscope.data.stream.ImageStream` reads its images here)."""
        return self

    def data_hash(self) -> str:
        """sha256 of images and labels (first 16 hex digits): names the data a model or run used."""
        if not self._hash:
            h = hashlib.sha256(self.images.contiguous().numpy().tobytes())
            h.update(self.labels.numpy().astype("int64").tobytes())
            self._hash.append(h.hexdigest()[:16])
        return self._hash[0]
