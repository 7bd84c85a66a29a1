"""patchscope: attack, explain, defend and certify image classifiers against adversarial patches.

Images everywhere are float tensors in [0, 1], shape (N, C, H, W); normalisation lives inside
the model wrappers that :func:`patchscope.models.create_model` returns.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from patchscope.errors import PatchscopeError

__version__ = "0.1.0"
__all__ = ["PatchscopeError", "__version__", "lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's module ``__getattr__``: ``name`` is imported from ``package.<exports[name]>`` on first use, so
    importing the package stays cheap (e.g. without torch).

    >>> getattr_ = lazy_exports("patchscope", {"PatchscopeError": "errors"})
    >>> getattr_("PatchscopeError").__name__
    'PatchscopeError'
    """

    def get(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return get
