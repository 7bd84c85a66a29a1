"""PatchCleanser's verdict on one scene: is the clean view certified against any patch as large as the one placed,
and what does double masking answer on the patched view, decided by which mask
(:mod:`patchscope.defenses.patchcleanser`; one :func:`~patchscope.defenses.patchcleanser.pc_decision_map` of the two
views).

>>> import torch
>>> from patchscope.models import Classifier
>>> from patchscope.models.archs import cnn
>>> from patchscope.explore.scene import Camera, Placement, blank_patch, render_scene
>>> m = Classifier(cnn(num_classes=3, width=4, hidden=8), ["a", "b", "c"]).eval()
>>> s = render_scene(torch.rand(3, 32, 32), blank_patch(32), Placement(16.0, 16.0), Camera())
>>> v = certify_scene(m, s, label=0, k=3)
>>> v.patch_side, v.masks, v.case in ("agree", "one mask", "majority")
(10, 9, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from patchscope.defenses.patchcleanser import (
    UNKNOWN,
    first_round_majority,
    mask_positions,
    mask_set,
    pc_certify,
    pc_decision_map,
    pc_infer,
)
from patchscope.explore.scene import Scene
from patchscope.models.wrapper import Classifier


@dataclass(frozen=True)
class Box:
    """A square mask on the view: ``top``, ``left`` and ``side`` in pixels."""

    top: int
    left: int
    side: int


@dataclass(frozen=True)
class Verdict:
    """PatchCleanser on one scene.

    Attributes:
        label: the class the certificate is about (the image's label, or the clean view's prediction).
        patch_side: the patch size certified against: the side of the square around the placed patch's footprint.
        mask_side: the side of each mask (``patch_side`` plus the stride, less one).
        masks: how many masks (k x k places).
        certified: the clean view is certified: no patch up to ``patch_side`` anywhere changes the defended answer.
        broken_by: when not certified, the first mask pair (one mask twice: a single mask) under which the clean view
            is not read as ``label``; None when certified.
        defended: PatchCleanser's answer on the patched view.
        case: how it was decided: ``agree`` (every single mask gives the same answer), ``one mask`` (the deciding mask
            ``deciding`` disagrees with the majority and every second mask agrees with it) or ``majority``.
        deciding: the deciding mask (case ``one mask``), else None.
        passes: forward passes it took (both views).
    """

    label: int
    patch_side: int
    mask_side: int
    masks: int
    certified: bool
    broken_by: tuple[Box, Box] | None
    defended: int
    case: str
    deciding: Box | None
    passes: int


def _box(index: int, starts: list[int], side: int) -> Box:
    """Mask ``index`` of :func:`mask_set` (row position first)."""
    return Box(starts[index // len(starts)], starts[index % len(starts)], side)


def _broken(row: torch.Tensor, label: int, starts: list[int], side: int) -> tuple[Box, Box] | None:
    """The first known entry of one image's decision map (single masks first) that is not ``label``."""
    wrong = (row != UNKNOWN) & (row != label)
    single = wrong.diagonal().nonzero().flatten()
    if len(single):
        i = int(single[0])
        return _box(i, starts, side), _box(i, starts, side)
    pairs = wrong.nonzero()
    if len(pairs) == 0:
        return None
    i, j = (int(v) for v in pairs[0])
    return _box(i, starts, side), _box(j, starts, side)


def _decision(row: torch.Tensor, num_classes: int) -> tuple[str, int | None]:
    """How :func:`pc_infer` decides one image's map: the case and, for a deciding single mask, its index."""
    one = row.diagonal()
    if bool((one == one[0]).all()):
        return "agree", None
    majority = first_round_majority(one[None], num_classes)[0]
    candidate = (one != majority) & (row == one[:, None]).all(1)
    if bool(candidate.any()):
        return "one mask", int(candidate.nonzero()[0])
    return "majority", None


@dataclass(frozen=True)
class Certificate:
    """The clean view's certificate: ``certified`` for ``label`` against any patch up to ``patch_side``; else
    ``broken_by``, the first mask pair under which it is not read as ``label``; ``passes`` forward passes."""

    certified: bool
    broken_by: tuple[Box, Box] | None
    passes: int


@dataclass(frozen=True)
class Defended:
    """Double masking's answer on a view: the class, how it was decided (see :class:`Verdict`), the deciding mask."""

    answer: int
    case: str
    deciding: Box | None
    passes: int


def _masks(model: Classifier, size: int, side: int, k: int) -> tuple[list[int], int, torch.Tensor, int]:
    """(mask starts, mask side, masks on the model's device, the number of classes) for a ``side`` px patch."""
    starts, mask_side, _ = mask_positions(size, min(size, max(1, side)), k)
    device = next(model.parameters()).device
    return starts, mask_side, mask_set(size, min(size, max(1, side)), k, device), len(model.classes)


def certify_view(
    model: Classifier, view: torch.Tensor, label: int, side: int, k: int = 6, batch_size: int = 256
) -> Certificate:
    """PatchCleanser's certificate of ``view`` (1, 3, H, W) for ``label`` against any square patch of ``side`` px."""
    starts, mask_side, masks, classes = _masks(model, view.shape[-1], side, k)
    labels = torch.tensor([label], device=masks.device)
    dm, passes = pc_decision_map(model, view.to(masks.device), labels, masks, batch_size, num_classes=classes)
    dm = dm.cpu()
    certified = bool(pc_certify(dm, labels.cpu())[0])
    return Certificate(certified, None if certified else _broken(dm[0], label, starts, mask_side), passes)


def defend_view(model: Classifier, view: torch.Tensor, side: int, k: int = 6, batch_size: int = 256) -> Defended:
    """PatchCleanser's double-masking answer on ``view`` (1, 3, H, W) with masks for a ``side`` px patch. Only the
    entries the answer reads are evaluated: no certificate is sought (the label given is one no prediction equals)."""
    starts, mask_side, masks, classes = _masks(model, view.shape[-1], side, k)
    none = torch.tensor([classes], device=masks.device)
    dm, passes = pc_decision_map(model, view.to(masks.device), none, masks, batch_size, num_classes=classes + 1)
    dm = dm.cpu()
    case, deciding = _decision(dm[0], classes + 1)
    answer = int(pc_infer(dm, classes + 1)[0])
    return Defended(answer, case, _box(deciding, starts, mask_side) if deciding is not None else None, passes)


def certify_scene(model: Classifier, scene: Scene, label: int, k: int = 6, batch_size: int = 256) -> Verdict:
    """PatchCleanser's certificate for ``scene``'s clean view and its answer on the patched view, against a square
    patch as large as the placed one (at least 1 px).

    Args:
        model: the classifier.
        scene: from :func:`~patchscope.explore.scene.render_scene`.
        label: the class to certify (the image's label, or the clean prediction).
        k: mask places per axis.
        batch_size: masked images per forward pass.

    Returns:
        A :class:`Verdict`.
    """
    size = scene.clean.shape[-1]
    side = min(size, max(1, scene.box_side()))
    starts, mask_side, masks, _ = _masks(model, size, side, k)
    cert = certify_view(model, scene.clean, label, side, k, batch_size)
    defended = defend_view(model, scene.patched, side, k, batch_size)
    return verdict(label, side, mask_side, len(masks), cert, defended)


def verdict(label: int, side: int, mask_side: int, masks: int, cert: Certificate, defended: Defended) -> Verdict:
    """The :class:`Verdict` of a clean view's certificate and a patched view's answer."""
    return Verdict(
        label,
        side,
        mask_side,
        masks,
        cert.certified,
        cert.broken_by,
        defended.answer,
        defended.case,
        defended.deciding,
        cert.passes + defended.passes,
    )
