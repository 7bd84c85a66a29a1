"""Batch sizes that follow the image size and the memory at hand, and forward passes that back off on out-of-memory.

A fixed default batch (1,024 images) suits 32-px images and overflows a laptop at 224 px. :func:`auto_batch_size`
measures what one image costs the model (every layer's output, from one forward pass on two blank images) and fits
as many images as a memory budget allows; :func:`forward_chunks` runs a batch through the model in chunks, halving
the chunk whenever the device runs out of memory. Each image's logits do not depend on its neighbours in an
evaluation-mode model, so the numbers are the same at any chunk size (up to the float rounding of the kernels).

>>> from patchscope.models.archs import cnn
>>> net = cnn(num_classes=3, width=4).eval()
>>> auto_batch_size(net, 32, "cpu", budget_bytes=2**30)
1024
>>> 1 <= auto_batch_size(net, 32, "cpu", budget_bytes=2**20) < 64
True
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from patchscope.errors import PatchscopeError
from patchscope.validate import check_batch

#: the most images per forward pass, whatever the budget (the default of small images)
MAX_BATCH = 1024
#: host memory a CPU run gives the model's activations by default (PATCHSCOPE_BATCH_BUDGET_MB overrides it)
CPU_BUDGET = 1 << 30
#: share of the free GPU memory a CUDA run gives them
GPU_SHARE = 0.5


def memory_budget(device: str | torch.device) -> int:
    """The bytes a forward pass may use on ``device``: ``PATCHSCOPE_BATCH_BUDGET_MB`` if set, else half the free
    GPU memory on CUDA and 1 GiB on a CPU."""
    override = os.environ.get("PATCHSCOPE_BATCH_BUDGET_MB")
    if override:
        try:
            mb = float(override)
        except ValueError:
            mb = -1.0
        if not mb > 0:
            raise PatchscopeError(f"PATCHSCOPE_BATCH_BUDGET_MB must be a positive number of MiB, got {override!r}")
        return int(mb * 2**20)
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * GPU_SHARE)
    return CPU_BUDGET


def bytes_per_image(model: nn.Module, image_size: int, device: str | torch.device = "cpu") -> int:
    """What one ``image_size``-px image costs ``model`` in a forward pass: the input plus every module's output
    (an upper bound: a pass frees most of them before the end), measured on two blank images in evaluation mode;
    the model is left as it was (its mode, its statistics, the random generators untouched)."""
    total = 0

    def add(_: nn.Module, __: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(add) for m in leaves]
    training = model.training  # measured in evaluation mode: no dropout draw, no batch-norm statistics updated
    try:
        x = torch.zeros(2, 3, image_size, image_size, device=device)
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    return max(1, (total + x.numel() * x.element_size()) // 2)


def auto_batch_size(
    model: nn.Module,
    image_size: int,
    device: str | torch.device = "cpu",
    budget_bytes: int | None = None,
    most: int = MAX_BATCH,
) -> int:
    """Images per forward pass for ``model`` on ``image_size``-px images: as many as ``budget_bytes`` (default
    :func:`memory_budget`) holds, at least 1 and at most ``most``.

    Args:
        model: the classifier, in evaluation mode, on ``device``.
        image_size: the side of its (square) input images.
        device: where it runs.
        budget_bytes: the memory a pass may use.
        most: the largest batch returned.

    Returns:
        The batch size.
    """
    return rows_within(bytes_per_image(model, image_size, device), device, budget_bytes, most)


def rows_within(
    row_bytes: float, device: str | torch.device = "cpu", budget_bytes: int | None = None, most: int = MAX_BATCH
) -> int:
    """How many rows of ``row_bytes`` each ``budget_bytes`` (default :func:`memory_budget`) holds, at least 1 and at
    most ``most``: the batch of a pass whose cost per row is known (e.g. an attack's step, which also renders and
    backpropagates).

    >>> rows_within(3 * 2**20, budget_bytes=2**30), rows_within(2**31, budget_bytes=2**30)
    (341, 1)
    """
    budget = memory_budget(device) if budget_bytes is None else budget_bytes
    return int(max(1, min(most, budget // max(1.0, row_bytes))))


def resolve_batch_size(
    model: nn.Module, batch_size: int | None, image_size: int, device: str | torch.device = "cpu"
) -> int:
    """``batch_size`` checked, or None: :func:`auto_batch_size` for ``model`` on ``image_size``-px images."""
    if batch_size is None:
        return auto_batch_size(model, image_size, device)
    return check_batch("batch_size", batch_size)


def _out_of_memory(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def forward_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``fn(x)`` computed ``chunk`` rows at a time and joined; on out-of-memory the chunk halves and the failed rows
    are tried again, down to one row (then the error stands). Rows are independent, so the result is the same (up to
    the float rounding of the kernels).

    Args:
        fn: a batched function of the rows (e.g. the model in evaluation mode).
        x: the batch (N, ...).
        chunk: rows per call to start with.

    Returns:
        ``fn(x)``, rows in order.

    >>> double = lambda t: t * 2
    >>> forward_chunks(double, torch.arange(5.0), 2).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    outs: list[torch.Tensor] = []
    start, size = 0, max(1, chunk)
    while start < len(x):
        try:
            outs.append(fn(x[start : start + size]))
        except (RuntimeError, torch.OutOfMemoryError) as e:
            if not _out_of_memory(e) or size == 1:
                raise
            size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start += size
    return torch.cat(outs)
