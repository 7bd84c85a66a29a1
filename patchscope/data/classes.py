"""Class names and the one function that turns a user's class name, id or WordNet id into an index."""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources

from patchscope.errors import PatchscopeError
from patchscope.validate import is_whole_number

WNID = re.compile(r"n\d{8}")


@cache
def gtsrb_classes() -> tuple[str, ...]:
    """The 43 GTSRB class names, lower case, in class-id order (13 ``yield``, 14 ``stop``)."""
    text = resources.files("patchscope.data").joinpath("gtsrb_classes.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return tuple(r["SignName"].strip().lower() for r in sorted(rows, key=lambda r: int(r["ClassId"])))


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids (``n01440764`` ...) in class-index order (their sorted order, as
    torchvision's and timm's ImageNet models number their classes), from the package's own list."""
    text = resources.files("patchscope.data").joinpath("imagenet_wnids.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def wnids_for(classes: Sequence[str], wnids: Sequence[str] | None = None) -> Sequence[str] | None:
    """The WordNet ids of ``classes``: ``wnids`` when given, ImageNet-1k's for 1000 classes, else None."""
    if wnids is not None:
        return wnids
    return imagenet_wnids() if len(classes) == 1000 else None


def find_class(value: str | int, classes: Sequence[str], wnids: Sequence[str] | None = None) -> int | None:
    """The index of ``value`` in ``classes`` (an id, a name ignoring case and ``_``, or a WordNet id); None if none.

    Raises :class:`PatchscopeError` for an id out of range, a name two classes share, or a WordNet id when the
    model's ids are unknown.

    >>> find_class("speed_limit_(60km/h)", gtsrb_classes()), find_class("bicycle", gtsrb_classes())
    (3, None)
    """
    text = str(value).strip()
    if is_whole_number(text):
        idx = int(text)
        if 0 <= idx < len(classes):
            return idx
        raise PatchscopeError(
            f"class id {idx} is out of range: there are {len(classes)} classes (0..{len(classes) - 1})"
        )
    key = _norm(text)
    hits = [i for i, c in enumerate(classes) if _norm(c) == key]
    if len(hits) > 1:
        hits = [i for i in hits if classes[i] == text] or hits  # "Cardigan" the dog, "cardigan" the sweater
    if len(hits) > 1:
        raise PatchscopeError(f"class {text!r} names several classes ({', '.join(map(str, hits))}): give the id")
    if hits:
        return hits[0]
    if WNID.fullmatch(text):
        ids = wnids_for(classes, wnids)
        if ids is None:
            raise PatchscopeError(
                f"class {text!r} is a WordNet id but this model's WordNet ids are unknown: "
                "name it by class id or name, or map it with a class map"
            )
        return list(ids).index(text) if text in ids else None
    return None


def resolve_class(value: str | int, classes: Sequence[str], wnids: Sequence[str] | None = None) -> int:
    """Return the index of ``value`` (an id, a case-insensitive name, or an ImageNet WordNet id) in ``classes``.

    Args:
        value: ``14``, ``"14"``, ``"STOP"``, ``"street_sign"`` or ``"n06794110"``.
        classes: the model's (or data's) class names, in index order.
        wnids: the classes' WordNet ids, when not ImageNet-1k's.
    Returns:
        The class index.

    >>> resolve_class("STOP", gtsrb_classes()), resolve_class("13", gtsrb_classes())
    (14, 13)
    """
    found = find_class(value, classes, wnids)
    if found is not None:
        return found
    text = str(value).strip()
    lowered = [c.lower() for c in classes]
    near = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise PatchscopeError(f"unknown class {text!r}{hint}")
