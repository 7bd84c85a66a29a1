"""Data-parallel runs under ``torchrun``: joining the process group, this process's share of the work, and combining
the shares so that every rank holds the whole result, equal to one process's.

In one process (no process group) every helper is the identity: rank 0 of a world of 1, every block is this
process's, and combining returns the tensor as it is.

The measuring functions (:func:`patchscope.eval.patch_metrics.patch_success`, :func:`patchscope.models.train.accuracy`,
:func:`patchscope.workflows.certify`) split their work this way whenever a group is joined, so every rank must call
them with the same arguments; the universal attack splits its batch likewise.

>>> rank_world()
(0, 1)
>>> list(my_blocks(10, 4))
[0, 4, 8]
>>> my_range(10)
range(0, 10)
>>> t = torch.tensor([1.0, 0.0])
>>> merge_rows(t) is t
True
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from patchscope.errors import PatchscopeError


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group is joined."""
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    """(this process's rank, the number of processes): ``(0, 1)`` without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def is_main() -> bool:
    """Whether this is the process that prints, writes files and records the run: rank 0 (or the only one)."""
    return rank_world()[0] == 0


def join(device: str) -> int:
    """Join the process group when launched by ``torchrun`` (NCCL for a CUDA ``device``, else gloo); return the rank.

    A plain ``cuda`` device becomes this process's own GPU, ``cuda:LOCAL_RANK``. Without ``torchrun`` (or with one
    process) nothing happens and the rank is 0.

    Args:
        device: where this process computes: ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        This process's rank.
    """
    if not launched():
        return 0
    if not active():
        cuda = device.startswith("cuda")
        if device == "cuda":
            local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
            if local >= gpus:
                raise PatchscopeError(
                    f"torchrun started process {local} on this machine but it has {gpus} GPU(s): "
                    "start at most one process per GPU (--nproc_per_node)"
                )
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank()


def leave() -> None:
    """Leave the process group, if any, before the interpreter exits (a group torn down at exit can abort)."""
    if active():
        dist.destroy_process_group()


def my_blocks(n: int, block: int) -> range:
    """The starts of this rank's blocks of ``block`` items among ``n``: blocks 0, 1, 2, ... dealt out in turn.

    Each block is then computed exactly as one process computes it (the same items in one batch), so results match
    one process's bit for bit.
    """
    rank, world = rank_world()
    return range(rank * block, n, world * block)


def my_indices(n: int, block: int) -> torch.Tensor:
    """The indices of the items in this rank's blocks (:func:`my_blocks`), in order, as a long tensor."""
    starts = my_blocks(n, block)
    if not starts:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([torch.arange(s, min(s + block, n)) for s in starts])


def my_range(n: int) -> range:
    """This rank's contiguous share of ``n`` items (the shares differ in size by at most one; some may be empty)."""
    rank, world = rank_world()
    return range(rank * n // world, (rank + 1) * n // world)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks, in place (every rank gets the sum); counts stay exact."""
    if active() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def merge_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, where each rank filled only its own rows of ``t`` and left zeros elsewhere: the whole
    tensor on every rank, each row exactly as its rank computed it (``x + 0`` is ``x``)."""
    return all_sum(t)


def all_max(value: float) -> float:
    """The largest of ``value`` over the ranks (e.g. the slowest rank's seconds)."""
    if not (active() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Each rank's ``t`` (any number of rows, the same trailing shape), concatenated in rank order on every rank:
    with :func:`my_range` shares, the rows in their original order.

    >>> gather_rows(torch.arange(3)).tolist()
    [0, 1, 2]
    """
    if not (active() and dist.get_world_size() > 1):
        return t
    world = dist.get_world_size()
    count = torch.tensor([len(t)], dtype=torch.long, device=t.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = t.new_zeros((max(sizes), *t.shape[1:]))
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def _collective_device() -> torch.device:
    """Where a small tensor for a collective lives: this rank's GPU under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
