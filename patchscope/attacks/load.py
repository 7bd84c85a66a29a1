"""`load_patch`: the one way to load a patch (a run folder, a file, a zoo name; universal or per-image)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, overload

from patchscope.attacks.patch import Patch, PerImagePatches, list_patches, patch_zoo_dir
from patchscope.errors import PatchscopeError


@overload
def load_patch(spec: str | Path, per_image: Literal[False] = False) -> Patch: ...


@overload
def load_patch(spec: str | Path, per_image: bool) -> Patch | PerImagePatches: ...


def load_patch(spec: str | Path, per_image: bool = False) -> Patch | PerImagePatches:
    """The one way to load a patch: a run folder, a ``patch.safetensors`` file, or the zoo (``zoo:MODEL/NAME``).

    Args:
        spec: where the patch is.
        per_image: also accept per-image patches (a folder with ``patches.safetensors``, or that file); without it
            they are refused with one line (only measuring takes them).

    Returns:
        A :class:`Patch`, or with ``per_image`` a :class:`~patchscope.attacks.patch.PerImagePatches` where the
        spec holds those.

    >>> p = load_patch("zoo:gtsrb-cnn/stop-yield")
    >>> p.placement, p.image_size
    ('on-object', 32)
    """
    text = str(spec)
    if text.startswith("zoo:"):
        name = text[4:]
        if name not in list_patches():
            raise PatchscopeError(f"unknown zoo patch {name!r}: bundled are {', '.join(list_patches()) or '(none)'}")
        return Patch.load(patch_zoo_dir() / name)
    path = Path(text)
    if per_image and ((path / "patches.safetensors").exists() or path.name == "patches.safetensors"):
        return PerImagePatches.load(path)
    return Patch.load(path)  # refuses per-image patches with one line
