"""Which device to run on: ``auto`` is CUDA when present, else the CPU; names are checked before any work."""

from __future__ import annotations

import torch

from patchscope.errors import PatchscopeError


def default_device() -> str:
    """``"cuda"`` when a CUDA device is usable, else ``"cpu"``.

    >>> default_device() in ("cuda", "cpu")
    True
    """
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | torch.device | None = "auto") -> str:
    """Turn a user's device (``auto``/None, ``cpu``, ``cuda``, ``cuda:N``) into one that exists here.

    Args:
        name: the requested device; ``auto`` or None picks :func:`default_device`.
    Returns:
        A device string torch accepts (``cpu``, ``cuda``, ``cuda:1``).
    Raises:
        PatchscopeError: an unknown name, CUDA asked for where there is none, or a CUDA index past the last GPU.

    >>> resolve_device("cpu"), resolve_device(None) == default_device()
    ('cpu', True)
    """
    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        return default_device()
    if text == "cpu":
        return "cpu"
    kind, _, index = text.partition(":")
    if kind != "cuda" or (index and not (index.isascii() and index.isdigit())):
        raise PatchscopeError(f"device {text!r}: use auto, cpu, cuda or cuda:N", params=("device",))
    if not torch.cuda.is_available():
        raise PatchscopeError(
            f"device {text!r}: CUDA is not available on this machine; use cpu (or auto)", params=("device",)
        )
    if index and int(index) >= torch.cuda.device_count():
        raise PatchscopeError(
            f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})",
            params=("device",),
        )
    return text
