"""`ImageStream`: an image set read from disk batch by batch (an ImageFolder tree, a large ``.npz``).

Host memory is bounded by the batch (times the loader's prefetch), not by the data set: files are
decoded and prepared (resize, centre crop) in ``torch.utils.data`` worker processes, handed over as
uint8 and turned into float [0, 1] on the device, through pinned memory on CUDA. Labels are known
before any image is read, so selecting a class or the first N images costs nothing.

:func:`~patchscope.data.sources.data_for` picks the form: GTSRB, the demo set and small
``.npz`` files come as an in-memory :class:`~patchscope.data.imageset.ImageSet`; folders and large uncompressed
``.npz`` files as an :class:`ImageStream`. Both offer ``iter_batches``, ``of_class``, ``head`` and ``load``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from patchscope.data.classes import gtsrb_classes, resolve_class
from patchscope.data.images import BAD_IMAGE_ERRORS, open_image, reason, shown
from patchscope.data.imageset import ImageSet
from patchscope.data.labels import ClassMap, match_folders
from patchscope.data.preprocess import Preprocess
from patchscope.errors import PatchscopeError
from patchscope.validate import check_labels, is_whole_number

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp", ".tif", ".tiff")
STREAM_BYTES = 256 << 20  # an .npz whose image array is larger than this (and stored uncompressed) is streamed


class Batches(Protocol):
    """What :class:`ImageSet` and :class:`ImageStream` both offer: labelled images in batches."""

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def name(self) -> str: ...

    def __len__(self) -> int: ...

    def iter_batches(
        self, batch_size: int, device: str | torch.device = "cpu"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def subset(self, index: torch.Tensor) -> Batches: ...


class FolderImages(Dataset):
    """Image files decoded and prepared one by one; item: ``(uint8 (3,S,S), label, index, error text or "")``."""

    def __init__(self, files: Sequence[str], labels: Sequence[int], preprocess: Preprocess) -> None:
        self.files, self.labels, self.preprocess = list(files), list(labels), preprocess

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, str]:
        try:
            with open_image(self.files[i]) as im:
                return self.preprocess(im), self.labels[i], i, ""
        except BAD_IMAGE_ERRORS as e:
            blank = torch.zeros(3, self.preprocess.crop, self.preprocess.crop, dtype=torch.uint8)
            return blank, self.labels[i], i, reason(e)


class NpzImages(Dataset):
    """Rows of a uint8 image array stored uncompressed inside an ``.npz``, memory-mapped (opened in each worker)."""

    def __init__(
        self, path: str, offset: int, shape: tuple[int, ...], labels: Sequence[int], preprocess: Preprocess | None
    ) -> None:
        self.path, self.offset, self.shape, self.labels, self.preprocess = path, offset, shape, list(labels), preprocess
        self.fingerprint = ""
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # each worker maps the file itself

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, str]:
        if self._array is None:
            self._array = np.memmap(self.path, np.uint8, "r", self.offset, self.shape)
        row = torch.from_numpy(np.array(self._array[i]))
        x = row if row.shape[0] == 3 else row.permute(2, 0, 1).contiguous()
        if self.preprocess is not None and tuple(x.shape[1:]) != (self.preprocess.crop, self.preprocess.crop):
            x = self.preprocess(x)
        return x, self.labels[i], i, ""


def default_workers(n_images: int, batch_size: int) -> int:
    """Loader worker processes: none for a single batch, else up to 4, leaving one CPU core to the main process."""
    if n_images <= batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 1))


@dataclass(frozen=True)
class ImageStream:
    """Labelled images read from disk in batches; a view (``index``) of one underlying dataset.

    Args:
        items: the dataset (:class:`FolderImages` or :class:`NpzImages`).
        labels: ``(N,)`` int64 labels of the viewed items.
        index: ``(N,)`` indices of the viewed items in ``items``.
        classes: class names in index order (the model's, for a folder opened with ``classes``).
        name: the data's spec, for messages.
        image_size: side of the prepared images.
        skip_bad: skip unreadable images (counted in ``skipped``) instead of raising.
        skipped: file -> reason for every image skipped so far, shared by views of one stream.

    >>> import tempfile, pathlib; from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for c in ("stop", "yield"):
    ...     (root / c).mkdir(); Image.new("RGB", (40, 40)).save(root / c / "a.png")
    >>> s = open_folder(root, gtsrb_classes(), Preprocess.square(32))
    >>> s.labels.tolist(), [x.shape for x, _ in s.iter_batches(8)]
    ([14, 13], [torch.Size([2, 3, 32, 32])])
    """

    items: Dataset
    labels: torch.Tensor
    index: torch.Tensor
    classes: tuple[str, ...]
    name: str
    image_size: int
    skip_bad: bool = False
    skipped: dict[str, str] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ImageStream:
        """The items at ``index`` (a bool mask or integer indices into this view)."""
        return ImageStream(
            self.items,
            self.labels[index],
            self.index[index],
            self.classes,
            self.name,
            self.image_size,
            self.skip_bad,
            self.skipped,
        )

    def of_class(self, cls: str | int) -> ImageStream:
        """Only the images of one class (a name or an id)."""
        return self.subset(self.labels == resolve_class(cls, self.classes))

    def head(self, n: int | None) -> ImageStream:
        """The first ``n`` images (all when ``n`` is None)."""
        return self if n is None or n >= len(self) else self.subset(torch.arange(n))

    def alternate(self) -> tuple[ImageStream, ImageStream]:
        """(even-indexed, odd-indexed) images, as :meth:`ImageSet.alternate`."""
        idx = torch.arange(len(self))
        return self.subset(idx[0::2]), self.subset(idx[1::2])

    def iter_uint8(
        self,
        batch_size: int,
        device: str | torch.device = "cpu",
        workers: int | None = None,
        skipped: dict[str, str] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(uint8 (B,3,S,S), labels (B,))`` in order; unreadable images raise (skipped with ``skip_bad``).

        Images skipped go to ``self.skipped`` and, when given, to ``skipped`` (this pass's alone).
        """
        dev = torch.device(device)
        n_workers = default_workers(len(self), batch_size) if workers is None else workers
        loader = DataLoader(
            Subset(self.items, self.index.tolist()),
            batch_size=batch_size,
            num_workers=n_workers,
            pin_memory=dev.type == "cuda",
            prefetch_factor=2 if n_workers else None,
        )
        read = 0
        for x, y, idx, errors in loader:
            bad = [k for k, e in enumerate(errors) if e]
            if bad:
                x, y = self._drop_bad(x, y, idx, errors, bad, skipped)
                if not len(y):
                    continue
            read += len(y)
            yield x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if len(self) and not read:  # a number over no image at all would look like a result
            raise PatchscopeError(
                f"{self.name}: all {len(self)} images it was asked for are unreadable (skip_bad skipped them); "
                "there is nothing to measure",
                params=("skip_bad",),
            )

    def _drop_bad(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        errors: Sequence[str],
        bad: list[int],
        this_pass: dict[str, str] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        files = getattr(self.items, "files", None)
        where = [shown(files[int(idx[k])]) if files else f"image {int(idx[k])}" for k in bad]
        if not self.skip_bad:
            raise PatchscopeError(
                f"{self.name}: cannot read image {where[0]} ({errors[bad[0]]}); skip_bad skips unreadable images",
                params=("skip_bad",),
            )
        for target in (self.skipped, this_pass if this_pass is not None else {}):
            target.update({w: errors[k] for w, k in zip(where, bad)})
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[bad] = False
        return x[keep], y[keep]

    def iter_batches(
        self, batch_size: int, device: str | torch.device = "cpu", workers: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images float [0,1] (B,3,S,S), labels (B,))`` in order, on ``device``.

        Args:
            batch_size: images per batch (the last may be smaller, and so may one that lost skipped images).
            device: where the batches go (pinned host memory on the way to CUDA).
            workers: loader processes; by default up to 4, none for a single batch.
        """
        for x, y in self.iter_uint8(batch_size, device, workers):
            yield x.float().div_(255), y

    batches = iter_batches

    def load(self, batch_size: int = 256) -> ImageSet:
        """Read every viewed image into an in-memory :class:`ImageSet` (for small selections: attack victims)."""
        x = torch.empty(len(self), 3, self.image_size, self.image_size, dtype=torch.uint8)
        y = torch.empty(len(self), dtype=torch.long)
        filled, skipped = 0, dict[str, str]()
        for xb, yb in self.iter_uint8(batch_size, skipped=skipped):
            x[filled : filled + len(yb)], y[filled : filled + len(yb)] = xb, yb
            filled += len(yb)
        return ImageSet(x[:filled], y[:filled], self.classes, self.name, skipped=tuple(skipped))

    def float_images(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """All viewed images as float in [0, 1] on ``device``: reads them all into memory (see :meth:`load`)."""
        return self.load().float_images(device)

    def data_hash(self) -> str:
        """sha256 (16 hex digits) of the viewed items (a file's folder, name and size; an array's checksum and row),
        labels and preparation: names the data without reading every pixel again."""
        items = self.items
        h = hashlib.sha256(
            repr((self.image_size, getattr(items, "preprocess", None), getattr(items, "fingerprint", ""))).encode()
        )
        files = getattr(self.items, "files", None)
        for i, label in zip(self.index.tolist(), self.labels.tolist()):
            if files:
                p = Path(files[i])
                h.update(f"{p.parent.name}/{p.name}\0{p.stat().st_size}\0{label}\n".encode())
            else:
                h.update(f"{i}\0{label}\n".encode())
        return h.hexdigest()[:16]


def scan_folder(path: Path, name: str) -> dict[str, list[str]]:
    """``{class folder: sorted image files}`` of an ImageFolder tree, hidden entries (``.cache``) left out."""
    if not path.is_dir():
        raise PatchscopeError(f"{name}: {path} is not a folder")
    folders = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise PatchscopeError(f"{name}: {path} has no class sub-folders (expected {path}/CLASS/IMAGE.png)")
    tree = {
        c: sorted(
            str(f)
            for f in (path / c).iterdir()
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()
        )
        for c in folders
    }
    if not any(tree.values()):
        raise PatchscopeError(f"{name}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    return tree


def open_folder(
    path: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    preprocess: Preprocess | None = None,
    class_map: ClassMap | None = None,
    wnids: Sequence[str] | None = None,
    skip_bad: bool = False,
    name: str | None = None,
) -> ImageStream:
    """An ImageFolder tree as an :class:`ImageStream`, labelled by the model's ``classes``.

    Args:
        path: the tree's root: one sub-folder per class.
        classes: the model's class names; folders match them by id, name, WordNet id or ``class_map``
            (see :func:`~patchscope.data.labels.match_folders`). None: the sorted folder names are the
            classes (43 numeric folders: GTSRB's ids and names).
        preprocess: the model's preparation; None: a 32-px square resize.
        class_map: folder name -> class id or name.
        wnids: the classes' WordNet ids, when not ImageNet-1k's.
        skip_bad: skip unreadable images (and count them in ``skipped``) instead of raising.
        name: the data's name for messages (default ``folder:PATH``).
    Returns:
        The stream of every image, labels known, nothing decoded yet.
    """
    root = Path(path).expanduser()
    name = name or f"folder:{path}"
    tree = scan_folder(root, name)
    if classes is None:
        folders = list(tree)
        gt = gtsrb_classes()
        gtsrb_ids = len(folders) == len(gt) and all(is_whole_number(c) and 0 <= int(c) < len(gt) for c in folders)
        names = tuple(gt[int(c)] if gtsrb_ids else c.lower() for c in folders)
        labels_of = {c: i for i, c in enumerate(folders)}
    else:  # a folder without images labels nothing: it need not match a class
        names = tuple(classes)
        labels_of = match_folders([c for c in tree if tree[c]], names, class_map, wnids, name)
    files = [f for c in tree for f in tree[c]]
    labels = [labels_of[c] for c in tree for _ in tree[c]]  # an empty folder has no file to label
    prep = preprocess or Preprocess.square(32)
    items = FolderImages(files, labels, prep)
    y = torch.tensor(labels, dtype=torch.long)
    return ImageStream(items, y, torch.arange(len(files)), names, name, prep.crop, skip_bad)


def _stored_array(path: Path, member: str) -> tuple[int, tuple[int, ...], int] | None:
    """(byte offset, shape, CRC-32) of an uncompressed C-order uint8 ``member`` of the zip at ``path``; else None."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with path.open("rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    return (offset, tuple(shape), info.CRC) if dtype == np.uint8 and not fortran and len(shape) == 4 else None


def open_npz_stream(
    path: Path, split: str | None, name: str, preprocess: Preprocess | None = None, min_bytes: int = STREAM_BYTES
) -> ImageStream | None:
    """A large uncompressed ``.npz`` image array, memory-mapped, as an :class:`ImageStream`; None if small or packed."""
    try:
        with zipfile.ZipFile(path) as z:
            keys = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile):
        return None  # load_data reports it
    if split is None:
        xs = sorted(k[2:] for k in keys if k.startswith("x_"))
        split = "" if "x" in keys else ("test" if "test" in xs else (xs[0] if len(xs) == 1 else None))
    xk, yk = ("x", "y") if split == "" else (f"x_{split}", f"y_{split}")
    if split is None or xk not in keys or yk not in keys:
        return None
    stored = _stored_array(path, f"{xk}.npy")
    if stored is None or int(np.prod(stored[1])) < min_bytes or 3 not in (stored[1][1], stored[1][3]):
        return None
    with np.load(path, allow_pickle=False) as z:
        y = z[yk]
        given = z["classes"] if "classes" in keys else None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != stored[1][0]:
        return None  # load_data reports it
    n = int(y.max()) + 1 if y.size else 0
    classes = (
        tuple(str(c).lower() for c in given)
        if given is not None
        else (gtsrb_classes() if n <= 43 else tuple(f"class_{i}" for i in range(n)))
    )
    check_labels(f"{name}: {yk}", y, len(classes))  # as a small file's labels are checked
    side = preprocess.crop if preprocess is not None else stored[1][2]
    items = NpzImages(str(path), stored[0], stored[1], y.astype(np.int64).tolist(), preprocess)
    items.fingerprint = f"crc32 {stored[2]:08x}"  # the zip's own checksum of the image array: names its pixels
    return ImageStream(items, torch.from_numpy(y.astype(np.int64)), torch.arange(len(y)), classes, name, int(side))
