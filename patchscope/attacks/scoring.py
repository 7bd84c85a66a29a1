"""How every attack scores a patch: paste it, view the image, classify, and read the loss and the win of each row.

>>> import torch
>>> from patchscope.attacks.eot import NO_CHANGE, sample_view
>>> from patchscope.models.archs import cnn
>>> model = cnn(num_classes=3, width=4).eval()
>>> x, y = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
>>> views = sample_view(4, NO_CHANGE, 32, 5, "on-object", torch.full((4, 2), 3.0), torch.Generator().manual_seed(0))
>>> rows = render_rows(x, torch.rand(4, 3, 5, 5), torch.ones(5, 5), None, views)
>>> loss, won = score(model, rows, y, Objective(target=1))
>>> loss.shape, won.dtype
(torch.Size([4]), torch.bool)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from patchscope.attacks.eot import ViewParams, paste, paste_planned, view
from patchscope.attacks.losses import attack_loss
from patchscope.models.batching import bytes_per_image, rows_within

#: an on-object paste's plan (see :func:`~patchscope.attacks.eot.on_object_plan`)
Plan = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: what the model's part of an attack's step (forward, then backward to the image) costs a row, in units of
#: :func:`~patchscope.models.batching.bytes_per_image`: 0.45 (a 32-px ResNet) to 1.06 (ViT-B/16 at 224 px) in
#: ``bench/step_memory.py``, rendering included; the rest is room for the allocator
BACKWARD_FACTOR = 1.25
#: what rendering a row costs (the pasted and viewed image and what the backward pass keeps of it), in float32
#: copies of the image: 10 to 11.5 on-object and 12.6 to 14 for a sticker (``bench/step_memory.py``)
RENDER_COPIES = 16


def classify(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """``model(x)`` as float32 logits; ``precision="bf16"`` runs it under bf16 autocast, with channels-last
    input on a CPU (oneDNN's fast bf16 convolutions, AMX where the CPU has it)."""
    if precision == "fp32":
        return model(x)
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return model(x).float()


@dataclass(frozen=True)
class Objective:
    """What a row's score means: ``target`` (None: untargeted), the ``loss`` and its ``kappa`` (see
    :func:`~patchscope.attacks.losses.attack_loss`), and the model's ``precision`` (see :func:`classify`)."""

    target: int | None
    loss: str = "margin"
    kappa: float = 5.0
    precision: str = "fp32"


def succeeded(logits: torch.Tensor, labels: torch.Tensor, target: int | None) -> torch.Tensor:
    """(N,) bool: the row is won (targeted: ``target`` is top-1; untargeted: its label is not)."""
    return logits.argmax(1) == target if target is not None else logits.argmax(1) != labels


def render_rows(
    x: torch.Tensor, pix: torch.Tensor, mask: torch.Tensor, plan: Plan | None, views: ViewParams, still: bool = False
) -> torch.Tensor:
    """Paste patch row ``pix[i]`` (R, 3, s, s) on image row ``x[i]`` (R, 3, H, W) and view it: (R, 3, H, W).

    Args:
        plan: an on-object paste's :func:`~patchscope.attacks.eot.on_object_plan`, else None (paste by ``views``).
        still: the camera and light change nothing (:attr:`ViewRanges.still`), so only paste.
    """
    x = paste_planned(x, pix, plan) if plan is not None else paste(x, pix, mask, views)
    return x if still else view(x, views)


def step_row_bytes(model: nn.Module, image_size: int, device: str | torch.device = "cpu") -> float:
    """What one row of an attack's step (render, classify, backpropagate to the patch) costs on ``image_size``-px
    images: the model's share (:data:`BACKWARD_FACTOR`) and the rendering's (:data:`RENDER_COPIES`)."""
    image = 3 * image_size * image_size * 4
    return bytes_per_image(model, image_size, device) * BACKWARD_FACTOR + RENDER_COPIES * image


def step_rows(model: nn.Module, image_size: int, device: str | torch.device, most: int) -> int:
    """Rows per pass of an attack's step that the memory budget holds (:func:`step_row_bytes`), 1 to ``most``.

    >>> from patchscope.models.archs import cnn
    >>> step_rows(cnn(num_classes=3, width=4).eval(), 32, "cpu", most=4096) > 320  # a 32-px step in one pass
    True
    """
    return rows_within(step_row_bytes(model, image_size, device), device, most=most)


def score(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: Objective
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classify the rendered rows ``x`` (R, 3, H, W) with true labels ``y`` (R,): the loss of every row (R,) to
    minimise, and whether it is won (R,) bool."""
    logits = classify(model, x, objective.precision)
    loss = attack_loss(logits, y, objective.target, objective.loss, objective.kappa)
    return loss, succeeded(logits, y, objective.target)
