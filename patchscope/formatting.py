"""How numbers and classes read wherever a person reads them: tables, the runs list, reports, figures, progress.

One rule for every place: a rate (success, accuracy, an area or confidence as a share) is a percentage with one
decimal, other floats keep four significant digits, ``None`` is ``-``, a flag is ``yes`` / ``no``, a class is its
name with its index. ``--json`` output is never formatted: it keeps the machine values.

>>> value_text(0.47593, "targeted_success"), value_text(0.3, "lr"), value_text(None), value_text(False, "compile")
('47.6%', '0.3', '-', 'no')
>>> class_label("yield", 13), an("8.0% patch")
('yield (13)', 'an 8.0% patch')
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["an", "class_label", "is_rate", "key_parts", "pct", "value_text"]

#: a name whose last word is one of these is a share (``targeted_success``, ``val_accuracy``, ``patch_area``)
RATE_WORDS = frozenset({"success", "accuracy", "area", "confidence", "fraction"})
#: names that are shares on their own (patch sizes are shares of the image)
RATE_NAMES = frozenset(
    {"size", "sizes", "patch_size", "certify_size", "transfer_size", "a90", "target_rate", "certified", "defended"}
    | {"white_box", "transfer_in", "transfer_out"}
)


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal, None as ``-``.

    >>> pct(0.5), pct(0.98765), pct(None)
    ('50.0%', '98.8%', '-')
    """
    return "-" if value is None else f"{value:.1%}"


def is_rate(key: str) -> bool:
    """Whether the metric or setting named ``key`` (dotted for nested ones) holds a share in [0, 1].

    The name's last part decides (``models.gtsrb-cnn.clean_accuracy``); a data set's name under a share counts as
    one (``accuracy.gtsrb:test``).

    >>> is_rate("models.gtsrb-cnn.clean_accuracy"), is_rate("accuracy.gtsrb:test"), is_rate("batch_size")
    (True, True, False)
    >>> is_rate("demo_accuracy_images"), is_rate("patch.defended.images")
    (False, False)
    """
    *parents, last = key_parts(str(key).lower())
    if _rate_name(last):
        return True
    return bool(parents) and not re.fullmatch(r"[a-z_]+", last) and _rate_name(parents[-1])


def key_parts(key: str) -> tuple[str, ...]:
    """A dotted name's parts; a dot inside a number is no separator.

    >>> key_parts("gtsrb-cnn.white_box.on-object@0.05")
    ('gtsrb-cnn', 'white_box', 'on-object@0.05')
    """
    return tuple(re.split(r"\.(?!\d)", key))


def _rate_name(part: str) -> bool:
    return part in RATE_NAMES or re.split(r"[_\s-]+", part)[-1] in RATE_WORDS


def _number(value: float, rate: bool) -> str:
    if rate and 0 <= value <= 1:
        return pct(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def value_text(value: Any, key: str = "") -> str:
    """Any value as a person reads it (see the module's docstring); ``key`` names it, to tell rates.

    >>> value_text([0.06, 0.1], "sizes"), value_text(1, "clean_accuracy"), value_text({"a": 1}), value_text(2.0)
    ('6.0%, 10.0%', '100.0%', '{"a": 1}', '2')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return _number(value, is_rate(key))
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(value_text(v, key) for v in value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def class_label(name: str | None, index: int | None = None) -> str:
    """A class as a person reads it: its name, with its index where known (``yield (13)``); ``-`` for none.

    >>> class_label("stop", 14), class_label("tench"), class_label(None)
    ('stop (14)', 'tench', '-')
    """
    if name is None:
        return "-"
    return f"{name} ({index})" if index is not None and str(index) != str(name) else str(name)


def an(text: str) -> str:
    """``text`` after the right indefinite article, read aloud: ``an 8% patch``, ``an 11% patch``, ``a 10% patch``.

    >>> an("18% patch"), an("on-object patch"), an("5% patch")
    ('an 18% patch', 'an on-object patch', 'a 5% patch')
    """
    spoken_vowel = re.match(r"(8|1[18](?![\d,])|[aeio])", text.lower()) is not None
    return f"{'an' if spoken_vowel else 'a'} {text}"
