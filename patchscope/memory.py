"""Host memory tuned for batched tensor work: keep freed blocks instead of handing them back to the OS.

glibc serves every large block with ``mmap`` and unmaps it on ``free``, so a loop that allocates the same
large activations each step pays fresh page faults each time. On a 2-core CPU, half of a ResNet
mask-training step (``train --mask-tries 16``) was kernel time; see ``bench/malloc.py``.
:func:`keep_freed_memory` raises glibc's thresholds (``mallopt``), as ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` would, so the process reuses its freed memory. The cost: memory the process
has freed stays reserved for it until it exits. Elsewhere (macOS, Windows, musl) it does nothing.

``PATCHSCOPE_MALLOC=system`` leaves the allocator as it is, and so does a ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES`` the user set. The ``patchscope`` command
calls it at start; library users may call it themselves:

    >>> from patchscope.memory import keep_freed_memory
    >>> keep_freed_memory() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
_SETTINGS = ((M_MMAP_THRESHOLD, 2**31 - 1), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 1 << 28))
_USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse; True when every setting was taken, False when left alone."""
    if os.environ.get("PATCHSCOPE_MALLOC", "").lower() == "system" or any(v in os.environ for v in _USER_VARS):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded into this process
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)
