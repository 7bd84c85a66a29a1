"""Folder names -> the model's class indices: ids, names, ImageNet WordNet ids, or a JSON class map."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from patchscope.data.classes import find_class
from patchscope.errors import PatchscopeError

ClassMap = Mapping[str, "str | int"]


def load_class_map(path: str | os.PathLike[str]) -> dict[str, str | int]:
    """Read a JSON object ``{"folder name": class id or name, ...}``.

    >>> import json, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "map.json"
    >>> _ = f.write_text(json.dumps({"stopsigns": "stop", "other": 13}))
    >>> load_class_map(f)
    {'stopsigns': 'stop', 'other': 13}
    """
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PatchscopeError(f"class_map: no such file {p}", params=("class_map",)) from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise PatchscopeError(f"class_map: {p} is not a readable JSON file ({e})", params=("class_map",)) from None
    except RecursionError:
        raise PatchscopeError(f"class_map: {p} is nested too deeply", params=("class_map",)) from None
    if not isinstance(data, dict) or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in data.values()
    ):
        raise PatchscopeError(
            f'class_map: {p} must be one JSON object of folder name -> class id or name, e.g. {{"my stops": "stop"}}',
            params=("class_map",),
        )
    return data


def match_folders(
    folders: Sequence[str],
    classes: Sequence[str],
    class_map: ClassMap | None = None,
    wnids: Sequence[str] | None = None,
    name: str = "data",
) -> dict[str, int]:
    """Map each folder name to the index of a model class.

    A folder is matched, in order, by ``class_map`` (its value an id or a name), as a class id (``14``,
    ``00014``), as a class name ignoring case and ``_`` (``street_sign``), or as a WordNet id (``n06794110``,
    ImageNet-1k's when the model has 1000 classes, else ``wnids``). Classes without
    a folder are fine; a folder that matches nothing is an error naming it.

    Args:
        folders: the sub-folder names of an ImageFolder tree.
        classes: the model's class names, in index order.
        class_map: folder name -> class id or name, for folders named otherwise.
        wnids: the classes' WordNet ids, when not ImageNet-1k's.
        name: the data's name, for messages.
    Returns:
        ``{folder: class index}`` for every folder.

    >>> match_folders(["00014", "Yield", "mine"], ["a"] * 13 + ["yield", "stop"], {"mine": "stop"})
    {'00014': 14, 'Yield': 13, 'mine': 14}
    """
    mapped = dict(class_map or {})
    out: dict[str, int] = {}
    unmatched: list[str] = []
    for folder in folders:
        try:
            found = (
                find_class(mapped[folder], classes, wnids) if folder in mapped else find_class(folder, classes, wnids)
            )
        except PatchscopeError as e:
            raise PatchscopeError(f"{name}: folder {folder!r}: {e}", params=("class_map",)) from None
        if found is None and folder in mapped:
            raise PatchscopeError(
                f"{name}: class_map maps folder {folder!r} to {mapped[folder]!r}, which is no class of the model",
                params=("class_map",),
            )
        if found is None:
            unmatched.append(folder)
        else:
            out[folder] = found
    if unmatched:
        shown = ", ".join(repr(f) for f in unmatched[:5]) + (
            f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        )
        raise PatchscopeError(
            f"{name}: folder{'s' if len(unmatched) > 1 else ''} {shown} match{'es' if len(unmatched) == 1 else ''} "
            f"no class of the model ({len(classes)} classes, e.g. {classes[0]!r}): name folders by class id, "
            "class name or WordNet id, or give a class_map",
            params=("class_map",),
        )
    return out
