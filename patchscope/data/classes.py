"""Class names and the one function that turns a user's class name or id into an index."""

from __future__ import annotations

import csv
import difflib
from functools import cache
from importlib import resources
from collections.abc import Sequence

from patchscope.errors import PatchscopeError


@cache
def gtsrb_classes() -> tuple[str, ...]:
    """The 43 GTSRB class names, lower case, in class-id order (13 ``yield``, 14 ``stop``)."""
    text = resources.files("patchscope.data").joinpath("gtsrb_classes.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return tuple(r["SignName"].strip().lower() for r in sorted(rows, key=lambda r: int(r["ClassId"])))


def resolve_class(value: str | int, classes: Sequence[str]) -> int:
    """Return the index of ``value`` (a case-insensitive name or an id) in ``classes``.

    >>> resolve_class("STOP", gtsrb_classes()), resolve_class("13", gtsrb_classes())
    (14, 13)
    """
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        idx = int(text)
        if 0 <= idx < len(classes):
            return idx
        raise PatchscopeError(f"class id {idx} is out of range: this data has {len(classes)} classes (0..{len(classes) - 1})")
    lowered = [c.lower() for c in classes]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    near = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise PatchscopeError(f"unknown class {text!r}{hint}")
