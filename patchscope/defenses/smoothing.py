"""Derandomized smoothing (Levine & Feizi, NeurIPS 2020): certified patch robustness by ablation voting.

Each *ablation* keeps only a band of ``b`` columns (``column``) or a ``b`` x ``b`` block (``block``)
of the image, at every position with wrap-around, and fills the rest with 0.5 grey. (The paper
fills with 0 and adds a "kept" channel; the zoo's models take 3 channels and were trained with grey
occlusion, so grey it is.) :func:`ds_prediction_map` counts each class's votes ``(N, C)``;
:func:`ds_certify` and :func:`ds_predict` are pure functions of the counts.

A ``p`` x ``p`` patch meets at most ``delta = p + b - 1`` column bands, or ``(p + b - 1)^2`` blocks
(:func:`ds_delta`), so it moves at most ``delta`` votes. Bands may start every ``stride`` px instead of every
pixel (fewer ablations on large images; ``delta`` is then counted exactly). By default the band and the
stride follow the image: a band of 1/8 of the side for columns and 3/8 for blocks, a stride of 1/32 of it
(4, 12 and 1 px at 32 px; 28, 84 and 7 px at 224 px), so every image size gets the same 32 column or 32 x 32
block positions.

>>> import torch
>>> counts = torch.tensor([[30, 2, 0], [12, 11, 9]])
>>> ds_predict(counts).tolist(), ds_certify(counts, torch.tensor([0, 0]), delta=7).tolist()
([0, 0], [True, False])
"""

from __future__ import annotations

import torch
from torch import nn

from patchscope.defenses.counts import CertCounts, CertOutcomes
from patchscope.defenses.patchcleanser import FILL
from patchscope.defenses.registry import register_certifier
from patchscope.errors import PatchscopeError
from patchscope.validate import check_int

MODES = ("column", "block")


def ds_delta(patch_side: int, band: int, mode: str = "column", image_size: int | None = None, stride: int = 1) -> int:
    """Ablations a ``patch_side`` patch can intersect: ``p + b - 1`` columns, squared for blocks; with a
    ``stride`` above 1, the most bands any patch position on an ``image_size`` image meets (counted).

    >>> ds_delta(7, 4, "column"), ds_delta(7, 4, "block"), ds_delta(50, 28, "column", 224, 7)
    (10, 100, 11)
    """
    if mode not in MODES:
        raise PatchscopeError(f"ablation mode {mode!r}: choose column or block")
    if stride == 1:
        d = patch_side + band - 1
    else:
        if image_size is None:
            raise PatchscopeError("image_size is needed to count the bands a patch meets at a stride above 1")
        keep = ablation_set(image_size, band, "column", stride=stride)[:, 0]  # (P, n): each band's kept columns
        windows = ablation_set(image_size, patch_side, "column")[: image_size - patch_side + 1, 0]  # (X, n)
        d = int(((keep.float() @ windows.float().T) > 0).sum(0).max())
    return d if mode == "column" else d * d


def default_band(image_size: int, mode: str) -> int:
    """The band a size calls for: 1/8 of the side for columns, 3/8 for blocks (4 and 12 at 32 px).

    >>> default_band(32, "column"), default_band(32, "block"), default_band(224, "column")
    (4, 12, 28)
    """
    return max(1, round(image_size * (1 if mode == "column" else 3) / 8))


def default_stride(image_size: int) -> int:
    """Bands start every 1/32 of the side (1 px up to 63 px): 32 column positions at any size.

    >>> default_stride(32), default_stride(224)
    (1, 7)
    """
    return max(1, image_size // 32)


def ablation_set(
    image_size: int, band: int, mode: str = "column", device: str | torch.device = "cpu", stride: int = 1
) -> torch.Tensor:
    """Boolean *kept* regions ``(A, n, n)``: A = P column bands or P^2 blocks of side ``band``, wrapping around,
    starting every ``stride`` px (P = ceil(n / stride) positions per axis).

    >>> a = ablation_set(8, 3, "column"); a.shape, a.sum((1, 2)).unique().tolist()
    (torch.Size([8, 8, 8]), [24])
    >>> ablation_set(8, 3, "block", stride=4).shape
    torch.Size([4, 8, 8])
    """
    if mode not in MODES:
        raise PatchscopeError(f"ablation mode {mode!r}: choose column or block")
    band = check_int("band", band, 1, image_size)
    stride = check_int("stride", stride, 1, image_size)
    ax = torch.arange(image_size, device=device)
    starts = ax[::stride]
    keep = (ax[None, :] - starts[:, None]) % image_size < band  # (positions, n): kept rows/cols per start
    if mode == "column":
        return keep[:, None, :].expand(len(starts), image_size, image_size).clone()
    return (keep[:, None, :, None] & keep[None, :, None, :]).reshape(-1, image_size, image_size)


@torch.inference_mode()
def ds_prediction_map(
    model: nn.Module, images: torch.Tensor, kept: torch.Tensor, batch_size: int = 512, fill: float = FILL
) -> tuple[torch.Tensor, int]:
    """Votes ``(N, C)`` of the base model over all ablations and the forward passes per image.

    ``images`` (N,3,H,W) in [0,1] on the model's device; ``kept`` (A,H,W) bool from :func:`ablation_set`.

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"]).eval()
    >>> counts, passes = ds_prediction_map(m, torch.rand(2, 3, 32, 32), ablation_set(32, 4))
    >>> counts.shape, counts.sum(1).tolist(), passes
    (torch.Size([2, 3]), [32, 32], 32)
    """
    n, na = len(images), len(kept)
    kept = kept.to(images.device)
    grey = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    counts: torch.Tensor | None = None
    for start in range(0, n * na, batch_size):
        rows = torch.arange(start, min(start + batch_size, n * na), device=images.device)
        x = torch.where(kept[rows % na][:, None], images[rows // na], grey)
        pred = (logits := model(x)).argmax(1)
        if counts is None:
            counts = torch.zeros(n, logits.shape[1], dtype=torch.long, device=images.device)
        counts.index_put_((rows // na, pred), torch.ones_like(pred), accumulate=True)
    assert counts is not None
    return counts, na


def ds_predict(counts: torch.Tensor) -> torch.Tensor:
    """The smoothed prediction ``(N,)``: most votes, ties to the smaller class index.

    >>> ds_predict(torch.tensor([[3, 5, 5]])).tolist()
    [1]
    """
    return counts.argmax(1)


def ds_certify(counts: torch.Tensor, labels: torch.Tensor, delta: int) -> torch.Tensor:
    """Certified ``(N,)`` bool: the prediction is the label and no patch moving ``delta`` votes can flip it.

    With ties going to the smaller index, class ``c`` stays on top iff for every ``c' != c``:
    ``n_c - n_c' > 2 delta``, or ``n_c - n_c' == 2 delta`` with ``c < c'``.

    >>> ds_certify(torch.tensor([[10, 4, 0], [4, 10, 0]]), torch.tensor([0, 1]), delta=3).tolist()
    [True, False]
    """
    pred = ds_predict(counts)
    top = counts.gather(1, pred[:, None])
    idx = torch.arange(counts.shape[1], device=counts.device)
    need = 2 * delta + (idx[None, :] < pred[:, None]).long()  # runner-ups with a smaller index win ties
    safe = (top - counts >= need) | (idx[None, :] == pred[:, None])
    return safe.all(1) & (pred == labels.to(pred.device))


class DerandomizedSmoothing:
    """Derandomized smoothing with ``mode`` ablations of ``band`` px every ``stride`` px: counts per batch (votes,
    then certificates). ``band`` or ``stride`` 0: :func:`default_band`, :func:`default_stride` for the image size.

    >>> s = DerandomizedSmoothing(32, 5, band=4)
    >>> s.settings, s.precision
    ({'band': 4, 'ablations': 32, 'delta': 8}, 'fp32')
    >>> DerandomizedSmoothing(224, 50).settings
    {'band': 28, 'ablations': 32, 'delta': 11, 'stride': 7}
    """

    precision = "fp32"

    def __init__(
        self,
        image_size: int,
        patch_side: int,
        device: str | torch.device = "cpu",
        band: int = 0,
        mode: str = "column",
        stride: int = 0,
    ) -> None:
        band = band or default_band(image_size, mode)
        stride = stride or default_stride(image_size)
        self.kept = ablation_set(image_size, band, mode, device, stride)
        self.delta = ds_delta(patch_side, band, mode, image_size, stride)
        self.settings = {"band": band, "ablations": len(self.kept), "delta": self.delta}
        if stride > 1:
            self.settings["stride"] = stride

    def counts(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> CertCounts:
        """Counts (clean right, defended right, certified) and the forward passes, for images (N,3,H,W)."""
        return self.outcomes(model, images, labels, batch_size).counts()

    @torch.inference_mode()
    def outcomes(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> CertOutcomes:
        """Per image: right, defended right, certified, the smoothed prediction; and the forward passes."""
        labels = labels.to(images.device)
        votes, per_image = ds_prediction_map(model, images, self.kept, batch_size)
        prediction, certified = ds_predict(votes), ds_certify(votes, labels, self.delta)
        clean = model(images).argmax(1) == labels
        return CertOutcomes(clean, prediction == labels, certified, prediction, per_image * len(labels))


@register_certifier("ds-column")
def column_smoothing(
    image_size: int, patch_side: int, device: str | torch.device = "cpu", band: int = 0
) -> DerandomizedSmoothing:
    """Derandomized smoothing over column bands (Levine & Feizi's column smoothing), starting every 1/32 of the side.

    Args:
        band: the kept band's width in px; 0: 1/8 of the image side (4 px at 32 px).
    """
    return DerandomizedSmoothing(image_size, patch_side, device, band, "column")


@register_certifier("ds-block")
def block_smoothing(
    image_size: int, patch_side: int, device: str | torch.device = "cpu", band: int = 0
) -> DerandomizedSmoothing:
    """Derandomized smoothing over square blocks starting every 1/32 of the image side.

    Args:
        band: the kept block's side in px; 0: 3/8 of the image side (12 px at 32 px).
    """
    return DerandomizedSmoothing(image_size, patch_side, device, band, "block")
