"""Checks for values entering the library: each raises a one-line :class:`PatchscopeError` naming the parameter,
the value and what is allowed (``limit must be >= 1, got -3``). The command line maps parameter names to its flags.

>>> check_positive("steps", 5)
5
>>> check_positive("limit", -3)
Traceback (most recent call last):
...
patchscope.errors.PatchscopeError: limit must be >= 1, got -3
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from patchscope.errors import PatchscopeError

#: the largest batch any command accepts: more would only ask for memory no machine has
MAX_BATCH = 1 << 16
#: the largest image side a model card may declare
MAX_IMAGE_SIZE = 512


def _params(name: str) -> tuple[str, ...]:
    """The parameter an error names, for a front end to spell its own way (``limit`` -> ``--limit``): ``name``'s
    first word (``arch_kwargs width`` names ``arch_kwargs``), none where that is not a name (``demo: y_test``)."""
    first = name.split(" ", 1)[0]
    return (first,) if first.isidentifier() else ()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_whole_number(text: str) -> bool:
    """Whether ``text`` is a whole number as ``int()`` reads it: ASCII digits, one optional leading minus (not
    ``²``, ``--14`` or ``٣``, which only look numeric).

    >>> is_whole_number("14"), is_whole_number("-3"), is_whole_number("²"), is_whole_number("--14")
    (True, True, False, False)
    """
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (either bound may be None).

    Refuses floats with a fraction, bools and text.
    """
    if isinstance(value, bool):
        raise PatchscopeError(f"{name} must be a whole number, got {value!r}", params=_params(name))
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    try:
        value = operator.index(value)  # int, numpy and torch integers; not floats, text or None
    except TypeError:
        raise PatchscopeError(f"{name} must be a whole number, got {value!r}", params=_params(name)) from None
    if low is not None and high is not None and not low <= value <= high:
        raise PatchscopeError(f"{name} must be in {low}..{high}, got {value}", params=_params(name))
    if low is not None and value < low:
        raise PatchscopeError(f"{name} must be >= {low}, got {value}", params=_params(name))
    if high is not None and value > high:
        raise PatchscopeError(f"{name} must be <= {high}, got {value}", params=_params(name))
    return value


def check_positive(name: str, value: Any, high: int | None = None) -> int:
    """An int >= 1 (and <= ``high`` when given)."""
    return check_int(name, value, 1, high)


def check_optional_positive(name: str, value: Any, high: int | None = None) -> int | None:
    """None, or an int >= 1."""
    return None if value is None else check_positive(name, value, high)


def check_batch(name: str, value: Any) -> int:
    """A batch size: 1 to :data:`MAX_BATCH`."""
    return check_positive(name, value, MAX_BATCH)


def check_finite(name: str, value: Any) -> float:
    """A finite float (not NaN, not inf)."""
    if not _is_number(value) or not math.isfinite(value):
        raise PatchscopeError(f"{name} must be a finite number, got {value!r}", params=_params(name))
    return float(value)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite float in the interval from ``low`` to ``high`` (closed unless ``low_open``/``high_open``)."""
    v = check_finite(name, value)
    bad_low = low is not None and (v <= low if low_open else v < low)
    bad_high = high is not None and (v >= high if high_open else v > high)
    if bad_low or bad_high:
        if low is not None and high is not None:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise PatchscopeError(f"{name} must be in {interval}, got {value!r}", params=_params(name))
        if low is not None:
            raise PatchscopeError(
                f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}", params=_params(name)
            )
        raise PatchscopeError(
            f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}", params=_params(name)
        )
    return v


def check_fraction(name: str, value: Any) -> float:
    """A finite float strictly between 0 and 1."""
    if not _is_number(value) or not math.isfinite(value) or not 0 < value < 1:
        raise PatchscopeError(f"{name} must be a fraction, 0 < {name} < 1, got {value!r}", params=_params(name))
    return float(value)


def check_probability(name: str, value: Any) -> float:
    """A finite float in [0, 1]."""
    return check_range(name, value, 0.0, 1.0)


def check_non_negative(name: str, value: Any) -> float:
    """A finite float >= 0."""
    return check_range(name, value, 0.0)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise PatchscopeError(f"{name} must be one of {', '.join(choices)}, got {value!r}", params=_params(name))
    return str(value)


def check_labels(name: str, labels: Any, num_classes: int) -> None:
    """Integer labels, all in ``0..num_classes-1`` (a numpy array or a torch tensor)."""
    import numpy as np

    arr = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise PatchscopeError(
                f"{name}: labels must be whole numbers, got {arr.dtype} values such as {_first_bad(arr)}",
                params=_params(name),
            )
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise PatchscopeError(
            f"{name}: labels must be in 0..{num_classes - 1} ({num_classes} classes), got {bad}", params=_params(name)
        )


def check_same_classes(model_classes: Sequence[str] | None, data_classes: Sequence[str], data_name: str) -> None:
    """Refuse data whose labels do not mean the model's classes (a 1,000-class model on 43-class data).

    >>> check_same_classes(["a", "b"], ["a", "b"], "demo")
    >>> check_same_classes(["a"] * 1000, ["a"] * 43, "demo")
    Traceback (most recent call last):
    ...
    patchscope.errors.PatchscopeError: demo: its 43 classes differ from the model's 1000: the labels would not mean \
the model's classes
    """
    if model_classes is not None and len(model_classes) != len(data_classes):
        raise PatchscopeError(
            f"{data_name}: its {len(data_classes)} classes differ from the model's {len(model_classes)}: "
            "the labels would not mean the model's classes"
        )


def _first_bad(arr: Any) -> str:
    import numpy as np

    flat = arr.reshape(-1)
    bad = flat[~np.isfinite(flat) | (flat != np.round(flat))] if np.issubdtype(flat.dtype, np.floating) else flat
    return repr(float(bad[0])) if len(bad) else repr(flat[0])


def check_same_settings(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made with other settings: one line naming the first difference
    (``now``'s keys in order, then keys only ``saved`` has).

    >>> check_same_settings({"steps": 300, "seed": 0}, {"steps": 300, "seed": 0})
    >>> check_same_settings({"steps": 300, "seed": 0}, {"steps": 300, "seed": 1})
    Traceback (most recent call last):
    ...
    patchscope.errors.PatchscopeError: resume: the checkpoint was made with seed 0, not 1; resume with the same \
settings or start afresh without resume
    """
    import json

    def show(value: Any) -> str:
        return "none" if value is None else json.dumps(value) if not isinstance(value, str) else value

    for key in [*now, *(k for k in saved if k not in now)]:
        if saved.get(key) != now.get(key):
            raise PatchscopeError(
                f"resume: the checkpoint was made with {key} {show(saved.get(key))}, not {show(now.get(key))}; "
                "resume with the same settings or start afresh without resume",
                params=("resume",),
            )
