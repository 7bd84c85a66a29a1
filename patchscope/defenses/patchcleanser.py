"""PatchCleanser (Xiang et al., USENIX Security 2022): certified patch robustness by double masking.

Split into an expensive, batched *prediction map* and pure functions on it:

* :func:`mask_set` -- ``k`` x ``k`` square masks, each side ``m = p + s - 1`` with stride
  ``s = ceil((n - p + 1) / k)``, so every ``p`` x ``p`` window lies inside one of them;
* :func:`pc_prediction_map` -- the model's prediction for every single mask (diagonal) and every
  mask pair, ``(N, K, K)``, masked pixels filled with 0.5 grey (as the zoo's occlusion training);
* :func:`pc_certify` and :func:`pc_infer` -- certification and the robust double-masking prediction.

>>> import torch
>>> masks = mask_set(32, 7, k=6)
>>> masks.shape
torch.Size([36, 32, 32])
>>> pred_map = torch.zeros(2, 36, 36, dtype=torch.long); pred_map[1, 3, 5] = pred_map[1, 5, 3] = 1
>>> pc_certify(pred_map, torch.tensor([0, 0])).tolist(), pc_infer(pred_map).tolist()
([True, False], [0, 0])
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from patchscope.errors import PatchscopeError

FILL = 0.5  # grey, the zoo's occlusion colour


def mask_positions(image_size: int, patch_side: int, k: int = 6) -> tuple[list[int], int, int]:
    """Start offsets along one axis, the mask side ``m`` and stride ``s`` (the paper's mask set).

    >>> mask_positions(32, 7, 6)
    ([0, 5, 10, 15, 20, 21], 11, 5)
    """
    if not 1 <= patch_side <= image_size:
        raise PatchscopeError(f"a {patch_side}px patch does not fit a {image_size}px image")
    if k < 1:
        raise PatchscopeError(f"--k {k}: need at least one mask per axis")
    stride = math.ceil((image_size - patch_side + 1) / k)
    side = patch_side + stride - 1
    starts = list(range(0, image_size - side + 1, stride))
    if (image_size - side) % stride:
        starts.append(image_size - side)
    return starts, side, stride


def mask_set(image_size: int, patch_side: int, k: int = 6, device: str | torch.device = "cpu") -> torch.Tensor:
    """Boolean masks ``(K, n, n)``, True where masked; K = (positions per axis)^2 <= k^2.

    >>> mask_set(12, 3, 3).shape
    torch.Size([9, 12, 12])
    """
    starts, side, _ = mask_positions(image_size, patch_side, k)
    pos = torch.tensor(starts, device=device)
    ax = torch.arange(image_size, device=device)
    inside = (ax[None] >= pos[:, None]) & (ax[None] < pos[:, None] + side)  # (P, n)
    return (inside[:, None, :, None] & inside[None, :, None, :]).reshape(-1, image_size, image_size)


def pair_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unions of every unordered mask pair (diagonal = single masks): ``(K(K+1)/2, n, n)`` plus their (i, j)."""
    i, j = torch.triu_indices(len(masks), len(masks), device=masks.device)
    return masks[i] | masks[j], i, j


def masked_predictions(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 512, fill: float = FILL, bf16: bool = False
) -> torch.Tensor:
    """``model``'s argmax on every (image, mask) combination, ``(N, M)``; images (N,3,H,W), masks (M,H,W) bool.

    The masked images are built chunk by chunk from flat (image, mask) indices, ``batch_size`` at a time,
    on the images' device, channels-last on a CPU (about 1.5x faster there, same decisions). ``bf16`` runs
    the model under bfloat16 autocast on channels-last input (a GPU speed-up; a near-tie between two
    classes can then resolve differently, so compare before relying on it).

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> masked_predictions(m, torch.rand(2, 3, 32, 32), torch.zeros(5, 32, 32, dtype=torch.bool)).shape
    torch.Size([2, 5])
    """
    n, nm = len(images), len(masks)
    masks = masks.to(images.device)
    grey = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    out = torch.empty(n * nm, dtype=torch.long, device=images.device)
    fmt = torch.channels_last if bf16 or images.device.type == "cpu" else torch.contiguous_format
    cast = torch.autocast(images.device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()
    with cast:
        for start in range(0, n * nm, batch_size):
            rows = torch.arange(start, min(start + batch_size, n * nm), device=images.device)
            x = torch.where(masks[rows % nm][:, None], grey, images[rows // nm])
            out[rows] = model(x.contiguous(memory_format=fmt)).argmax(1)
    return out.view(n, nm)


@torch.inference_mode()
def pc_prediction_map(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 512, fill: float = FILL, bf16: bool = False
) -> tuple[torch.Tensor, int]:
    """Double-masking predictions ``(N, K, K)`` (symmetric; ``[:, i, i]`` = mask i alone) and forward passes per image.

    ``images`` (N,3,H,W) in [0,1] on the model's device; ``masks`` (K,H,W) bool from :func:`mask_set`.
    Only the K(K+1)/2 distinct pairs are evaluated; ``bf16`` as in :func:`masked_predictions`.

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> pm, passes = pc_prediction_map(m, torch.rand(2, 3, 32, 32), mask_set(32, 7, k=2))
    >>> pm.shape, passes, bool((pm == pm.transpose(1, 2)).all())
    (torch.Size([2, 4, 4]), 10, True)
    """
    union, i, j = pair_masks(masks.to(images.device))
    flat = masked_predictions(model, images, union, batch_size, fill, bf16)
    k = len(masks)
    pred_map = torch.empty(len(images), k, k, dtype=torch.long, device=images.device)
    pred_map[:, i, j] = flat
    pred_map[:, j, i] = flat
    return pred_map, len(union)


def pc_certify(pred_map: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Certified ``(N,)`` bool: every one- and two-mask prediction equals the label.

    >>> pc_certify(torch.ones(1, 3, 3, dtype=torch.long), torch.tensor([1])).tolist()
    [True]
    """
    return (pred_map == labels.view(-1, 1, 1).to(pred_map.device)).flatten(1).all(1)


def pc_infer(pred_map: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """The robust double-masking prediction ``(N,)`` (the paper's Algorithm 1), vectorised.

    Case I: all one-mask predictions agree -> that label. Case II: the first mask (in index order)
    whose one-mask prediction disagrees with the first-round majority and whose second-round
    predictions (its row of ``pred_map``) all agree with it -> its label. Case III: the majority
    (ties to the smaller class index). ``num_classes`` (default: read off the map, one device sync)
    sizes the vote count.

    >>> pm = torch.zeros(1, 3, 3, dtype=torch.long); pm[0, 2, :] = pm[0, :, 2] = 4
    >>> pc_infer(pm).tolist()  # mask 2 disagrees and its whole row agrees with it: Case II
    [4]
    """
    one = pred_map.diagonal(dim1=1, dim2=2)  # (N, K)
    classes = num_classes if num_classes is not None else (int(pred_map.max()) + 1 if pred_map.numel() else 1)
    counts = torch.zeros(len(one), classes, dtype=torch.long, device=one.device).scatter_add_(1, one, torch.ones_like(one))
    majority = counts.argmax(1)  # first maximum: the smaller class on ties
    consistent = (pred_map == one.unsqueeze(2)).all(2)  # (N, K): row i agrees with mask i's label
    candidate = (one != majority.unsqueeze(1)) & consistent
    first = candidate.to(torch.uint8).argmax(1, keepdim=True)
    return torch.where(candidate.any(1), one.gather(1, first).squeeze(1), majority)


@torch.inference_mode()
def pc_counts(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, batch_size: int = 512, bf16: bool = False, num_classes: int | None = None
) -> tuple[torch.Tensor, int]:
    """Counts ``(3,)`` long on the device: images right without defense, right under double masking, certified.

    One prediction map per call; the second value is forward passes per image. The CLI, the demo and the
    study all sum these over their chunks.

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> counts, passes = pc_counts(m, torch.rand(3, 3, 32, 32), torch.zeros(3, dtype=torch.long), mask_set(32, 7, k=2))
    >>> counts.shape, passes, bool(counts[2] <= counts[1] <= 3)
    (torch.Size([3]), 10, True)
    """
    labels = labels.to(images.device)
    pred_map, passes = pc_prediction_map(model, images, masks, batch_size, bf16=bf16)
    robust, certified = pc_infer(pred_map, num_classes), pc_certify(pred_map, labels)
    clean = model(images).argmax(1) == labels
    return torch.stack([clean.sum(), (robust == labels).sum(), certified.sum()]), passes
