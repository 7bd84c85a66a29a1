"""`load_data(spec)`: every data source the command line's ``--data`` accepts, in memory; `data_for(spec, model)`:
the same as a model takes it (what every command reads), folders and large ``.npz`` files streamed batch by batch.

``gtsrb:train`` / ``gtsrb:test`` (``$PATCHSCOPE_DATA/gtsrb32.npz``, else torchvision's download),
``demo`` (bundled subset), ``npz:PATH[:split]`` (uint8 ``x_*``/``y_*`` arrays) and
``folder:PATH`` (an ImageFolder tree: one sub-folder per class). Any of them followed by ``@N`` is the same
images resized to N x N first (bilinear, antialiased), e.g. ``gtsrb:test@64``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from patchscope.data.classes import gtsrb_classes
from patchscope.data.imageset import ImageSet
from patchscope.data.labels import ClassMap
from patchscope.data.preprocess import Preprocess
from patchscope.data.stream import IMAGE_EXTENSIONS, ImageStream, open_folder, open_npz_stream
from patchscope.errors import PatchscopeError
from patchscope.validate import check_labels

GTSRB_FILE = "gtsrb32.npz"
__all__ = ["IMAGE_EXTENSIONS", "data_for", "default_data_root", "load_data", "resize", "split_resolution"]
#: the largest side ``SPEC@N`` may ask for
MAX_RESOLUTION = 1024


def split_resolution(spec: str) -> tuple[str, int | None]:
    """``SPEC@N`` -> (``SPEC``, N); a spec without ``@N`` -> (spec, None).

    >>> split_resolution("gtsrb:test@64"), split_resolution("demo")
    (('gtsrb:test', 64), ('demo', None))
    """
    found = re.fullmatch(r"(.+)@([^@:/]*)", spec)
    if found is None:
        return spec, None
    side = found.group(2)
    if not (side.isascii() and side.isdigit()) or not 8 <= int(side) <= MAX_RESOLUTION:
        raise PatchscopeError(
            f"data {spec!r}: the side after @ must be a whole number of pixels in 8..{MAX_RESOLUTION}, e.g. @64",
            params=("data",),
        )
    return found.group(1), int(side)


def default_data_root() -> Path:
    """``$PATCHSCOPE_DATA``, else ``~/.patchscope/data``."""
    return Path(os.environ.get("PATCHSCOPE_DATA", Path.home() / ".patchscope" / "data")).expanduser()


def load_data(
    spec: str,
    root: str | os.PathLike[str] | None = None,
    size: int | None = None,
    *,
    classes: Sequence[str] | None = None,
    preprocess: Preprocess | None = None,
    class_map: ClassMap | None = None,
    skip_bad: bool = False,
) -> ImageSet:
    """Load the data set named by ``spec`` into memory; ``size`` resizes (folder images always; others if they differ).

    For a model, :func:`data_for` reads the data as the model takes it, streaming folders and big ``.npz`` files.

    Args:
        spec: ``gtsrb:train``, ``gtsrb:test``, ``demo``, ``npz:PATH[:split]`` or ``folder:PATH`` (``@N``: resized).
        root: where GTSRB lives (default :func:`default_data_root`).
        size: square side to resize to (a folder: 32 when neither this nor ``preprocess`` is given).
        classes: for a folder, the model's class names its sub-folders are matched to.
        preprocess: for a folder, the model's preparation (resize, centre crop).
        class_map: for a folder, folder name -> class id or name.
        skip_bad: for a folder, skip unreadable images instead of raising.
    Returns:
        The whole set as uint8 tensors (``skipped`` lists unreadable files left out with ``skip_bad``).

    >>> demo = load_data("demo")
    >>> demo.images.shape[1:], demo.classes[14]
    (torch.Size([3, 32, 32]), 'stop')
    >>> load_data("demo@64").images.shape[1:]
    torch.Size([3, 64, 64])
    """
    base, at = split_resolution(spec)
    if at is not None:
        if base.startswith("folder:") and preprocess is None:
            preprocess = Preprocess.square(at)
        data = load_data(base, root, classes=classes, preprocess=preprocess, class_map=class_map, skip_bad=skip_bad)
        data = dataclasses.replace(resize(data, at), name=spec)
        return resize(data, size) if size and size != at else data
    kind, _, rest = spec.partition(":")
    root_path = Path(root).expanduser() if root else default_data_root()
    if kind == "gtsrb" and rest in ("train", "test"):
        data = _gtsrb(root_path, rest)
    elif kind == "demo" and not rest:
        with resources.as_file(resources.files("patchscope.data").joinpath("demo", "gtsrb_demo.npz")) as demo:
            data = _npz(demo, None, "demo")
    elif kind == "npz" and rest:
        path, split = (rest, "") if Path(rest).exists() or ":" not in rest else rest.rsplit(":", 1)
        data = _npz(Path(path), split or None, spec)
    elif kind == "folder" and rest:
        prep = preprocess or Preprocess.square(size or 32)
        data = open_folder(rest, classes, prep, class_map, skip_bad=skip_bad, name=spec).load()
        size = prep.crop
    else:
        raise PatchscopeError(f"unknown data {spec!r}: use gtsrb:train, gtsrb:test, demo, npz:PATH or folder:PATH")
    if len(data) == 0:
        raise PatchscopeError(f"data {spec!r} holds no images")
    return resize(data, size) if size and size != data.image_size else data


def resize(data: ImageSet, size: int) -> ImageSet:
    """The same images bilinearly resized to ``size`` x ``size``."""
    x = F.interpolate(data.images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ImageSet(x.round().clamp(0, 255).to(torch.uint8), data.labels, data.classes, data.name, data.tracks)


def _from_arrays(
    x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], name: str, tracks: np.ndarray | None = None
) -> ImageSet:
    if x.dtype != np.uint8 or x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise PatchscopeError(f"{name}: images must be uint8 (N, H, W, 3) or (N, 3, H, W), got {x.shape} {x.dtype}")
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.transpose(0, 3, 1, 2)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise PatchscopeError(f"{name}: labels must be a 1-d integer array, got {y.shape} {y.dtype}")
    t = None if tracks is None else torch.from_numpy(tracks.astype(np.int64))
    return ImageSet(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), classes, name, t)


def _classes_for(n_labels: int, given: np.ndarray | None) -> tuple[str, ...]:
    """The npz's own ``classes`` names, else GTSRB's 43 (labels beyond them need a ``classes`` array)."""
    if given is not None:
        return tuple(str(c).lower() for c in given)
    return gtsrb_classes()


def _read_npz(path: Path | os.PathLike[str], name: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise PatchscopeError(f"{name}: no such file {path}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise PatchscopeError(
            f"{name}: {path} is not a readable .npz of plain arrays ({str(e).splitlines()[0]})"
        ) from None


def _npz(path: Path | os.PathLike[str], split: str | None, name: str) -> ImageSet:
    arrays = _read_npz(path, name)
    xs = sorted(k[2:] for k in arrays if k.startswith("x_"))
    if split is None:
        split = "" if "x" in arrays else ("test" if "test" in xs else (xs[0] if len(xs) == 1 else None))
    if split is None:
        raise PatchscopeError(f"{name}: {path} holds several splits {xs}; name one as npz:PATH:SPLIT")
    xk, yk = ("x", "y") if split == "" else (f"x_{split}", f"y_{split}")
    if xk not in arrays or yk not in arrays:
        raise PatchscopeError(f"{name}: {path} has no arrays {xk!r} and {yk!r} (found {sorted(arrays)})")
    y = arrays[yk]
    given = arrays.get("classes")
    if given is not None and (given.ndim != 1 or len(given) == 0):
        raise PatchscopeError(f"{name}: {path}'s classes must be a 1-d array of names, got shape {given.shape}")
    classes = _classes_for(0, given)
    check_labels(f"{name}: {yk}", y, len(classes))
    y = y.astype(np.int64)
    tk = "train_track" if split == "train" else f"{split}_track"
    return _from_arrays(arrays[xk], y, classes, name, arrays.get(tk))


def _gtsrb(root: Path, split: str) -> ImageSet:
    packed = root / GTSRB_FILE
    if packed.exists():
        arrays = _read_npz(packed, f"gtsrb:{split}")
        if f"x_{split}" in arrays and f"y_{split}" not in arrays:
            raise PatchscopeError(
                f"gtsrb:{split}: the {GTSRB_FILE} under root {root} has x_{split} but no labels y_{split}; it is "
                "incomplete: pack it again",
                params=("root",),
            )
        if f"x_{split}" in arrays:
            return _from_arrays(
                arrays[f"x_{split}"],
                arrays[f"y_{split}"],
                gtsrb_classes(),
                f"gtsrb:{split}",
                arrays.get("train_track") if split == "train" else None,
            )
    cached = root / f"gtsrb32-{split}.npz"
    if not cached.exists():
        from patchscope.data.torchvision_gtsrb import build_cache

        build_cache(root, split, cached)
    return _npz(cached, split, f"gtsrb:{split}")


def _open(
    spec: str,
    root: str | os.PathLike[str] | None,
    classes: Sequence[str] | None,
    preprocess: Preprocess | None,
    class_map: ClassMap | None,
    wnids: Sequence[str] | None,
    skip_bad: bool,
) -> ImageSet | ImageStream:
    """For :func:`data_for`: a stream for folders and large ``.npz`` files, else an in-memory set."""
    crop = preprocess.crop if preprocess is not None else None
    if split_resolution(spec)[1] is not None:
        return load_data(spec, root, crop, classes=classes, class_map=class_map, skip_bad=skip_bad)
    kind, _, rest = spec.partition(":")
    if kind == "folder" and rest:
        return open_folder(rest, classes, preprocess, class_map, wnids, skip_bad, spec)
    if kind == "npz" and rest:
        path, split = (rest, "") if Path(rest).exists() or ":" not in rest else rest.rsplit(":", 1)
        if Path(path).is_file():
            stream = open_npz_stream(Path(path), split or None, spec, preprocess)
            if stream is not None:
                return stream
    return load_data(spec, root, crop)


def data_for(
    spec: str,
    model: Any,
    root: str | os.PathLike[str] | None = None,
    *,
    class_map: ClassMap | None = None,
    skip_bad: bool = False,
) -> ImageSet | ImageStream:
    """The data ``spec`` as ``model`` takes it: what every command reads for a model.

    A ``folder:`` tree is labelled by the model's classes (class id, name, WordNet id or ``class_map``) and prepared
    as its card says (resize, centre crop); a folder or a large ``npz:`` file is streamed batch by batch. GTSRB,
    ``demo`` and small ``npz:`` files are loaded into memory at the model's input size.

    Args:
        spec: as :func:`load_data`.
        model: a classifier (``classes``, ``preprocess``, ``input_size``, optional ``wnids``), or an int: a plain
            size (a folder is then labelled by its sorted folder names).
        root: where GTSRB lives.
        class_map: folder name -> class id or name, for folders the model's classes do not name.
        skip_bad: skip unreadable images in a folder instead of raising.

    >>> data_for("demo", 64).image_size
    64
    """
    if isinstance(model, int) or not spec.startswith(("folder:", "npz:")):
        return load_data(spec, root, model if isinstance(model, int) else int(model.input_size))
    return _open(spec, root, model.classes, model.preprocess, class_map, getattr(model, "wnids", None), skip_bad)
