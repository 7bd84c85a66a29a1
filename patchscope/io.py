"""Small file helpers shared by every layer: atomic writes, so nothing is ever half-written, and the one JSON
encoder (strict JSON: a NaN or an infinity is written as null, never as the bare ``NaN`` strict parsers refuse)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    >>> with atomic_path("/tmp/x.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def finite(obj: Any) -> Any:
    """``obj`` with every float that is not finite (in dicts, lists and tuples) replaced by None.

    >>> finite({"a": float("nan"), "b": [1.5, float("inf")]})
    {'a': None, 'b': [1.5, None]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None, default: Callable[[Any], Any] | None = str) -> str:
    """``obj`` as strict JSON: NaN and infinities as null (also inside what ``default`` makes of other objects).

    >>> dumps({"val_accuracy": float("nan"), "n": 3})
    '{"val_accuracy": null, "n": 3}'
    """

    def fallback(o: Any) -> Any:
        if default is None:
            raise TypeError(f"{type(o).__name__} is not JSON serialisable")
        return finite(default(o))

    return json.dumps(finite(obj), indent=indent, default=fallback, allow_nan=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (see :func:`dumps`), atomically."""
    text = dumps(obj, indent=2) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
