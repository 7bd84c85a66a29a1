"""The run store, reports and reproduce lines: what was run, with which settings, and what it measured.

Importing this package does not import torch, so ``patchscope runs`` starts at once; submodules load on first use.

>>> from patchscope.runs import RunStore, Section, render_report, command_line
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Run": "store",
    "RunHandle": "store",
    "RunStore": "store",
    "compare": "store",
    "default_store_path": "store",
    "record": "store",
    "store_for": "store",
    "Section": "report",
    "render_report": "report",
    "runs_report": "report",
    "command_line": "reproduce",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"patchscope.runs.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'patchscope.runs' has no attribute {name!r}")
