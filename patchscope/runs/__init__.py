"""The run store, reports and reproduce lines: what was run, with which settings, and what it measured.

Importing this package does not import torch, so ``patchscope runs`` starts at once; submodules load on first use.

>>> from patchscope.runs import RunStore, Section, render_report, command_line
"""

from __future__ import annotations

from patchscope import lazy_exports

_MODULES = {
    "store": ("Run", "RunHandle", "RunStore", "compare", "default_store_path", "record", "store_for"),
    "report": ("Section", "render_report", "runs_report"),
    "reproduce": ("command_line",),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
