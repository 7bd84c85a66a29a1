"""What a stored run found, as a person reads it: one list of (name, value) rows per run, whatever its kind.

`patchscope runs list` shows the first few (:func:`headline`), `runs show` and the report all of them
(:func:`result_rows`). Nested metrics (an evaluation's per-model numbers, a curve's points, a defense's before and
after) are unrolled, numbers go through :func:`patchscope.formatting.value_text`, and each kind puts its main
results first (:data:`HEADLINE`).

>>> metrics = {"models": {"gtsrb-cnn": {"clean_accuracy": 0.993, "targeted_success": 0.476, "clean_images": 270}}}
>>> result_rows("evaluate", metrics)[:2]
[('gtsrb-cnn targeted success', '47.6%'), ('gtsrb-cnn clean accuracy', '99.3%')]
>>> headline("curve", {"on-object": {"a90": None, "points": [[0.06, 0.5], [0.1, 0.8]]}})
'on-object a90 not reached, on-object success at 6.0% 50.0%, on-object success at 10.0% 80.0%'
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from patchscope.formatting import class_label, key_parts, pct, value_text
from patchscope.runs.store import flatten

__all__ = ["HEADLINE", "headline", "result_rows", "setting_rows"]

#: per kind, the metrics (dotted names; ``*`` stands for a model, a placement, ...) shown first, in this order
HEADLINE: dict[str, tuple[str, ...]] = {
    "train": ("val_accuracy", "accuracy.*", "train_seconds"),
    "attack": ("*targeted_success", "*untargeted_success", "patch_area"),
    "evaluate": ("models.*.targeted_success", "models.*.clean_accuracy", "models.*.untargeted_success"),
    "curve": ("*.a90", "*.success at *"),
    "explain": ("patched_accuracy", "clean_accuracy", "adversarial_share_last"),
    "defend": ("patch.defended.targeted_success", "adaptive.defended.targeted_success", "defended_clean_accuracy"),
    "certify": ("certified_accuracy", "defended_accuracy", "clean_accuracy"),
    "bench": ("*.robust_accuracy", "*.certified_accuracy", "*.clean_accuracy"),
    "study": ("*.white_box.*", "*.certified_accuracy"),
    "demo": ("targeted_success", "certified.*", "transfer_success.*"),
}
#: long series a person does not read in a table (the attack's step-by-step history)
HIDDEN = ("history",)


Key = tuple[str, ...]


def _unrolled(metrics: Mapping[str, Any]) -> dict[Key, Any]:
    """The metrics flat (each name as its parts), curves' [(area, success)] points one per area, long series out."""
    out: dict[Key, Any] = {}
    for key, value in flatten(dict(metrics)).items():
        parts = key_parts(key)
        if parts[-1] in HIDDEN:
            continue
        if parts[-1] == "points" and isinstance(value, list) and all(len(p) == 2 for p in value):
            out.update({(*parts[:-1], f"success at {pct(area)}"): success for area, success in value})
        else:
            out[parts] = value
    return out


def _name(parts: Key) -> str:
    """A metric's name as words: ``models.gtsrb-cnn.clean_accuracy`` -> ``gtsrb-cnn clean accuracy``."""
    if parts[0] == "models" and len(parts) > 2:
        parts = parts[1:]
    return " ".join(parts).replace("_", " ")


def _text(parts: Key, value: Any) -> str:
    if value is None and parts[-1] == "a90":
        return "not reached"
    if parts[-1].startswith("success at "):
        return value_text(value, "success")
    return value_text(value, ".".join(parts))


def _ordered(kind: str, flat: dict[Key, Any]) -> list[Key]:
    """The keys of ``flat``: the kind's headline ones first (in :data:`HEADLINE` order), then the rest as stored."""
    first: list[Key] = []
    for pattern in HEADLINE.get(kind, ()):
        first += [k for k in flat if fnmatch.fnmatchcase(".".join(k), pattern) and k not in first]
    return first + [k for k in flat if k not in first]


def result_rows(kind: str, metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every result of a run of ``kind`` as (name, text) rows, its main results first."""
    flat = _unrolled(metrics)
    return [(_name(k), _text(k, flat[k])) for k in _ordered(kind, flat)]


def headline(kind: str, metrics: Mapping[str, Any], n: int = 3) -> str:
    """The first ``n`` results of a run, on one line (``-`` when it has none)."""
    return ", ".join(f"{name} {text}" for name, text in result_rows(kind, metrics)[:n]) or "-"


def setting_rows(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A run's settings as (name, text) rows: flat, a class by name with its id, rates as percentages, ``-`` for none.

    >>> setting_rows({"target": "tench", "target_id": 0, "limit": None, "compile": False, "size": 0.05})
    [('target', 'tench (0)'), ('limit', '-'), ('compile', 'no'), ('size', '5.0%')]
    """
    flat = flatten(dict(config))
    rows = []
    for k, v in flat.items():
        if k.endswith("_id") and k[:-3] in flat:
            continue  # shown with its class
        text = class_label(v, flat.get(f"{k}_id")) if f"{k}_id" in flat and isinstance(v, str) else value_text(v, k)
        rows.append((k.replace("_", " "), text))
    return rows
