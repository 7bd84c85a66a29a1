"""PatchCleanser (Xiang et al., USENIX Security 2022): certified patch robustness by double masking.

Split into an expensive, batched *prediction map* and pure functions on it:

* :func:`mask_set` -- ``k`` x ``k`` square masks, each side ``m = p + s - 1`` with stride
  ``s = ceil((n - p + 1) / k)``, so every ``p`` x ``p`` window lies inside one of them;
* :func:`pc_prediction_map` -- the model's prediction for every single mask (diagonal) and every
  mask pair, ``(N, K, K)``, masked pixels filled with 0.5 grey (as the zoo's occlusion training);
* :func:`pc_certify` and :func:`pc_infer` -- certification and the robust double-masking prediction;
* :func:`pc_decision_map` -- only the entries those two read (:func:`pc_needed`), for fewer passes.

>>> import torch
>>> masks = mask_set(32, 7, k=6)
>>> masks.shape
torch.Size([36, 32, 32])
>>> pred_map = torch.zeros(2, 36, 36, dtype=torch.long); pred_map[1, 3, 5] = pred_map[1, 5, 3] = 1
>>> pc_certify(pred_map, torch.tensor([0, 0])).tolist(), pc_infer(pred_map).tolist()
([True, False], [0, 0])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from patchscope.defenses.counts import CertCounts, CertOutcomes
from patchscope.defenses.registry import register_certifier
from patchscope.errors import PatchscopeError
from patchscope.validate import check_int

FILL = 0.5  # grey, the zoo's occlusion colour
RECHECK = (
    0.25  # bf16 predictions whose top-two logit gap is below this share of the largest |logit| are redone in float32
)


def mask_positions(image_size: int, patch_side: int, k: int = 6) -> tuple[list[int], int, int]:
    """Start offsets along one axis, the mask side ``m`` and stride ``s`` (the paper's mask set).

    >>> mask_positions(32, 7, 6)
    ([0, 5, 10, 15, 20, 21], 11, 5)
    """
    if not 1 <= patch_side <= image_size:
        raise PatchscopeError(f"a {patch_side}px patch does not fit a {image_size}px image")
    k = check_int("k", k, 1)  # more masks than places only repeat places: the set is the same as with one per place
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
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int = 512,
    fill: float = FILL,
    bf16: bool = False,
) -> torch.Tensor:
    """``model``'s argmax on every (image, mask) combination, ``(N, M)``; images (N,3,H,W), masks (M,H,W) bool.

    The masked images are built chunk by chunk, ``batch_size`` at a time, on the images' device, channels-last
    on a CPU (about 1.5x faster there, same decisions). ``bf16`` runs the model under bfloat16 autocast on
    channels-last input, with near-ties redone in float32 (see :func:`predict_masked`).

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> masked_predictions(m, torch.rand(2, 3, 32, 32), torch.zeros(5, 32, 32, dtype=torch.bool)).shape
    torch.Size([2, 5])
    """
    n, nm = len(images), len(masks)
    rows = torch.arange(n * nm, device=images.device)
    return predict_masked(model, images, masks, rows // nm, rows % nm, None, batch_size, fill, bf16).view(n, nm)


def predict_masked(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    image: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor | None = None,
    batch_size: int = 512,
    fill: float = FILL,
    bf16: bool = False,
    recheck: float = RECHECK,
) -> torch.Tensor:
    """``model``'s argmax on ``images[image[r]]`` under ``masks[first[r]] | masks[second[r]]`` for each row r, ``(R,)``.

    The flat form behind :func:`masked_predictions` and :func:`pc_decision_map`: any list of (image, mask or
    mask pair) combinations, evaluated ``batch_size`` at a time; ``second`` None means single masks.
    With ``bf16``, a prediction whose top-two bf16 logits are closer than ``recheck`` times its largest
    absolute logit is computed again in float32 (0 turns that off): on the zoo models bf16 rounding moved a
    logit by at most 4.4% of that scale, so the top-two gap by under 9%, and only such near-ties can
    differ from a float32 run. The rechecks (1-3% of the predictions there) are extra forward passes.
    """
    masks = masks.to(images.device)
    grey = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    out = torch.empty(len(image), dtype=torch.long, device=images.device)
    near = torch.zeros(len(image), dtype=torch.bool, device=images.device) if bf16 and recheck > 0 else None
    fmt = torch.channels_last if bf16 or images.device.type == "cpu" else torch.contiguous_format
    for start in range(0, len(image), batch_size):
        rows = slice(start, start + batch_size)
        hidden = masks[first[rows]] if second is None else masks[first[rows]] | masks[second[rows]]
        x = torch.where(hidden[:, None], grey, images[image[rows]]).contiguous(memory_format=fmt)
        with torch.autocast(images.device.type, torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        out[rows] = logits.argmax(1)
        if near is not None and logits.shape[1] > 1:
            top = logits.topk(2, dim=1).values
            near[rows] = top[:, 0] - top[:, 1] < recheck * logits.abs().amax(1)
    if near is not None:  # the near-ties of every chunk again in float32, in full batches (one host sync)
        redo = near.nonzero().flatten()
        out[redo] = predict_masked(
            model, images, masks, image[redo], first[redo], None if second is None else second[redo], batch_size, fill
        )
    return out


@torch.inference_mode()
def pc_prediction_map(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int = 512,
    fill: float = FILL,
    bf16: bool = False,
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
    majority = first_round_majority(
        one, num_classes if num_classes is not None else (int(pred_map.max()) + 1 if pred_map.numel() else 1)
    )
    consistent = (pred_map == one.unsqueeze(2)).all(2)  # (N, K): row i agrees with mask i's label
    candidate = (one != majority.unsqueeze(1)) & consistent
    first = candidate.to(torch.uint8).argmax(1, keepdim=True)
    return torch.where(candidate.any(1), one.gather(1, first).squeeze(1), majority)


def first_round_majority(one: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The most frequent one-mask prediction of each image ``(N,)`` from ``one`` (N, K); ties to the smaller class.

    >>> first_round_majority(torch.tensor([[2, 1, 1, 2, 0]]), 3).tolist()
    [1]
    """
    counts = torch.zeros(len(one), num_classes, dtype=torch.long, device=one.device).scatter_add_(
        1, one, torch.ones_like(one)
    )
    return counts.argmax(1)  # first maximum: the smaller class on ties


def pc_needed(one: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which second-round predictions can change a decision, from the one-mask predictions ``one`` (N, K).

    Returns ``rows`` (N, K) bool, the masks whose whole row :func:`pc_infer` reads (those that disagree with
    the first-round majority: Case II candidates), and ``full`` (N,) bool, the images whose certificate
    depends on the pairs (every one-mask prediction is right). No other entry of the map changes
    :func:`pc_infer` or :func:`pc_certify`: an image with a wrong one-mask prediction is not certified.

    >>> rows, full = pc_needed(torch.tensor([[1, 1, 1], [1, 0, 1], [2, 2, 2]]), torch.tensor([1, 1, 1]), 3)
    >>> rows.tolist(), full.tolist()
    ([[False, False, False], [False, True, False], [False, False, False]], [True, False, False])
    """
    labels = labels.to(one.device)
    return one != first_round_majority(one, num_classes).unsqueeze(1), (one == labels.unsqueeze(1)).all(1)


def central_pairs(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct pairs ``i < j`` of ``masks`` (K, H, W), the pairs whose masks lie nearest the image centre first.

    >>> i, j = central_pairs(mask_set(32, 7, k=3))
    >>> len(i), (int(i[0]), int(j[0])) in [(1, 4), (3, 4), (4, 5), (4, 7)]  # mask 4 sits in the middle
    (36, True)
    """
    k, h, w = masks.shape
    grid = (
        torch.stack(
            torch.meshgrid(torch.arange(h, device=masks.device), torch.arange(w, device=masks.device), indexing="ij")
        )
        .flatten(1)
        .float()
    )
    area = masks.flatten(1).float()
    centre = area @ grid.T / area.sum(1, keepdim=True).clamp_min(1)  # (K, 2)
    off = (centre - torch.tensor([(h - 1) / 2, (w - 1) / 2], device=masks.device)).norm(dim=1)
    i, j = torch.triu_indices(k, k, offset=1, device=masks.device)
    order = (off[i] + off[j]).argsort(stable=True)
    return i[order], j[order]


def row_pairs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image, i, j), i < j, of every pair of two distinct masks that holds a mask of ``rows`` (N, K) bool, each once.

    >>> [t.tolist() for t in row_pairs(torch.tensor([[False, True, True]]))]
    [[0, 0, 0], [0, 0, 1], [1, 2, 2]]
    """
    k = rows.shape[1]
    image, i = rows.nonzero(as_tuple=True)
    j = torch.arange(k, device=rows.device).repeat(len(i))
    image, i = image.repeat_interleave(k), i.repeat_interleave(k)
    key = torch.unique((image * k + torch.minimum(i, j)) * k + torch.maximum(i, j))
    key = key[key % k != (key // k) % k]  # a mask with itself is a single mask, known already
    return key // (k * k), (key // k) % k, key % k


UNKNOWN = -1  # an entry of a decision map that was not evaluated because no decision reads it


@torch.inference_mode()
def pc_decision_map(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int = 512,
    fill: float = FILL,
    bf16: bool = False,
    num_classes: int | None = None,
    first_round: int = 32,
) -> tuple[torch.Tensor, int]:
    """The entries of the prediction map that decide :func:`pc_infer` and :func:`pc_certify`, ``(N, K, K)``
    with :data:`UNKNOWN` elsewhere, and the forward passes it took (all images together).

    First every single mask; then, per :func:`pc_needed`, the rows of the masks that disagree with the
    majority, and the pairs of images whose one-mask predictions are all right: the most central pairs
    first (they hide most of a centred object, so they fail most often), in rounds of ``first_round``
    pairs, then twice, four times as many..., dropping an image at its first wrong pair (its certificate
    is lost). The decisions equal those of the full :func:`pc_prediction_map`, for fewer passes: on
    gtsrb-cnn about 60% of them, as images that lose a mask, or a pair early, skip the rest.

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> x, y, masks = torch.rand(3, 3, 32, 32), torch.tensor([0, 1, 0]), mask_set(32, 7, k=2)
    >>> dm, passes = pc_decision_map(m, x, y, masks)
    >>> full, _ = pc_prediction_map(m, x, masks)
    >>> same = (pc_certify(dm, y) == pc_certify(full, y)).all() and (pc_infer(dm) == pc_infer(full)).all()
    >>> bool(same), passes <= 3 * 10
    (True, True)
    """
    n, k, dev = len(images), len(masks), images.device
    masks, labels = masks.to(dev), labels.to(dev)
    one = masked_predictions(model, images, masks, batch_size, fill, bf16)
    classes = num_classes if num_classes is not None else int(torch.cat([one.flatten(), labels]).max()) + 1
    rows, full = pc_needed(one, labels, classes)
    dm = torch.full((n, k, k), UNKNOWN, dtype=torch.long, device=dev)
    dm.diagonal(dim1=1, dim2=2).copy_(one)
    passes = n * k

    def fill_pairs(image: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        pred = predict_masked(model, images, masks, image, i, j, batch_size, fill, bf16)
        dm[image, i, j] = pred
        dm[image, j, i] = pred
        return pred

    image, i, j = row_pairs(rows)  # Case II: the rows of the disagreeing masks
    fill_pairs(image, i, j)
    passes += len(image)
    # certificates: all pairs of the images with every single mask right, dropping each at its first wrong pair
    passes += _certificate_pairs(fill_pairs, full, labels, masks, first_round)
    return dm, passes


def _certificate_pairs(
    fill_pairs: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    full: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    first_round: int,
) -> int:
    """Predict the mask pairs, most central first, of the images ``full`` marks, in rounds of ``first_round``
    pairs then twice as many each round, dropping an image at its first wrong pair; returns the passes taken.
    ``fill_pairs(image, i, j)`` predicts image ``image`` under masks ``i`` and ``j`` (and keeps the answer)."""
    pi, pj = central_pairs(masks)
    alive, done, size, passes = full.nonzero().flatten(), 0, max(1, first_round), 0
    while done < len(pi) and len(alive):
        chunk = slice(done, done + size)
        n_pairs = len(pi[chunk])
        image = alive.repeat_interleave(n_pairs)
        pred = fill_pairs(image, pi[chunk].repeat(len(alive)), pj[chunk].repeat(len(alive)))
        passes += len(image)
        alive = alive[(pred.view(len(alive), n_pairs) == labels[alive, None]).all(1)]
        done, size = done + n_pairs, 2 * size
    return passes


@torch.inference_mode()
def pc_outcomes(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int = 512,
    bf16: bool = False,
    num_classes: int | None = None,
) -> CertOutcomes:
    """Per image: right without defense, right under double masking, certified, the double-masking prediction; and
    the forward passes it took (one :func:`pc_decision_map`: the same decisions as the full map, fewer passes).

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> o = pc_outcomes(m, torch.rand(3, 3, 32, 32), torch.zeros(3, dtype=torch.long), mask_set(32, 7, k=2))
    >>> o.prediction.shape, bool((o.certified <= o.robust).all())
    (torch.Size([3]), True)
    """
    labels = labels.to(images.device)
    pred_map, passes = pc_decision_map(model, images, labels, masks, batch_size, bf16=bf16, num_classes=num_classes)
    prediction, certified = pc_infer(pred_map, num_classes), pc_certify(pred_map, labels)
    clean = model(images).argmax(1) == labels
    return CertOutcomes(clean, prediction == labels, certified, prediction, passes)


def pc_counts(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int = 512,
    bf16: bool = False,
    num_classes: int | None = None,
) -> CertCounts:
    """Images right without defense, right under double masking, certified, and the forward passes it took.

    :func:`pc_outcomes` counted. This is the per-batch piece: :func:`patchscope.workflows.certify.certify` sums it
    over a whole data set (chunks, progress, resume).

    Returns:
        A :class:`~patchscope.defenses.counts.CertCounts` (counts on the device; passes of all images together).

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> c = pc_counts(m, torch.rand(3, 3, 32, 32), torch.zeros(3, dtype=torch.long), mask_set(32, 7, k=2))
    >>> 3 * 4 <= c.passes <= 3 * 10, bool(c.certified <= c.robust <= 3), c.stacked().shape
    (True, True, torch.Size([3]))
    """
    return pc_outcomes(model, images, labels, masks, batch_size, bf16, num_classes).counts()


@register_certifier("patchcleanser")
class PatchCleanser:
    """PatchCleanser's double masking: counts per batch with :func:`pc_counts`.

    Args:
        k: mask positions per axis.
        bf16: bfloat16 autocast, faster on a GPU or a CPU with bf16 units; near-ties are redone in float32.

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> pc = PatchCleanser(32, 7, k=2)
    >>> pc.settings
    {'k': 2, 'masks': 4, 'mask_side': 19, 'mask_stride': 13, 'full_map_passes': 10}
    >>> m = Classifier(cnn(num_classes=2, width=4), ["a", "b"]).eval()
    >>> c = pc.counts(m, torch.rand(3, 3, 32, 32), torch.zeros(3, dtype=torch.long), 64)
    >>> bool(c.certified <= c.robust <= 3)
    True
    """

    def __init__(
        self, image_size: int, patch_side: int, device: str | torch.device = "cpu", k: int = 6, bf16: bool = False
    ) -> None:
        _, side, stride = mask_positions(image_size, patch_side, k)
        self.masks = mask_set(image_size, patch_side, k, device)
        self.bf16 = bool(bf16)
        self.precision = "bf16" if bf16 else "fp32"
        n = len(self.masks)
        self.settings = {
            "k": k,
            "masks": n,
            "mask_side": side,
            "mask_stride": stride,
            "full_map_passes": n * (n + 1) // 2,
        }

    def counts(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> CertCounts:
        """Counts (clean right, defended right, certified) and the forward passes, for images (N,3,H,W)."""
        return self.outcomes(model, images, labels, batch_size).counts()

    def outcomes(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> CertOutcomes:
        """Per image: right, defended right, certified, the defended prediction; and the forward passes."""
        return pc_outcomes(
            model, images, labels, self.masks, batch_size, self.bf16, len(getattr(model, "classes", ())) or None
        )
