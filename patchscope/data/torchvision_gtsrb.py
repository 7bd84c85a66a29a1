"""The users' route to GTSRB when no packed copy exists: torchvision's download, ROI-cropped to 32x32.

torchvision's ``GTSRB`` yields whole frames; the official annotation CSVs beside them carry each
sign's region of interest, which we crop (right and bottom edges exclusive) before resizing, the
same way ``../shared/data`` was packed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from patchscope.data.images import BAD_IMAGE_ERRORS, read_rgb8, reason, shown
from patchscope.errors import PatchscopeError
from patchscope.io import atomic_path

SIDE = 32
CLASSES = 43  # GTSRB's classes: torchvision numbers its class folders 00000..00042
ROI = ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")


def _rois(base: Path, name: str) -> dict[str, tuple[int, int, int, int]]:
    """Map each image path (resolved) to its ROI box, from every ``GT-*.csv`` under ``base``."""
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for sheet in base.rglob("GT-*.csv"):
        for row in _sheet(sheet, ROI, name, base):
            x1, y1, x2, y2 = (int(row[k]) for k in ROI)
            for folder in (sheet.parent, sheet.parent / "GTSRB" / "Final_Test" / "Images"):
                boxes[str((folder / row["Filename"]).resolve())] = (x1, y1, x2, y2)
    return boxes


def _sheet(sheet: Path, numbers: tuple[str, ...], name: str, base: Path) -> list[dict[str, str]]:
    """The rows of one annotation sheet, each with a ``Filename`` and whole numbers under ``numbers``; a sheet cut
    short (a row missing a field, a field not a number) is one line naming it."""
    try:
        with sheet.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter=";", skipinitialspace=True))
    except (OSError, UnicodeError, csv.Error) as e:
        raise _incomplete(name, base, f"{shown(sheet)} cannot be read ({e.__class__.__name__})") from None
    for line, row in enumerate(rows, 2):
        fields = [(row.get(k) or "").strip() for k in ("Filename", *numbers)]
        if not all(fields) or not all(f.isascii() and f.isdigit() for f in fields[1:]):
            raise _incomplete(name, base, f"{shown(sheet)} line {line} is cut short") from None
    return rows


def _incomplete(name: str, base: Path, what: str) -> PatchscopeError:
    """The error for a download that stopped part way: what is missing, and how to get it whole."""
    return PatchscopeError(
        f"{name}: torchvision's GTSRB download under {shown(base)} is incomplete: {what}; remove {shown(base)} and "
        "download again",
        params=("root",),
    )


def _check_complete(base: Path, split: str, name: str) -> None:
    """Refuse a half-downloaded ``split`` under ``base`` (torchvision's ``gtsrb`` folder): every class folder with
    its frames and annotation sheet (train), the labels sheet and every image it lists (test)."""
    missing: list[str] = []
    if split == "train":
        for c in range(CLASSES):
            folder = base / "GTSRB" / "Training" / f"{c:05d}"
            sheet = folder / f"GT-{c:05d}.csv"
            if not folder.is_dir():
                missing.append(f"{folder.relative_to(base)}/")
            elif not any(folder.glob("*.ppm")) or not sheet.is_file():
                missing.append(str(folder.relative_to(base) / ("*.ppm" if sheet.is_file() else sheet.name)))
    else:
        labels = base / "GT-final_test.csv"
        if not labels.is_file():
            raise _incomplete(name, base, f"{labels.name} (the test labels) is missing")
        images = base / "GTSRB" / "Final_Test" / "Images"
        rows = _sheet(labels, (*ROI, "ClassId"), name, base)
        missing = [
            str((images / r["Filename"]).relative_to(base)) for r in rows if not (images / r["Filename"]).is_file()
        ]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise _incomplete(name, base, f"{', '.join(shown(m) for m in missing[:3])}{more} missing")


def _sign(path: str, box: tuple[int, ...] | None, name: str, base: Path) -> np.ndarray:
    """One frame's sign: its region of interest (the whole frame without one) at SIDE x SIDE, uint8 (H, W, 3)."""
    from PIL import Image

    try:
        rgb = read_rgb8(path)
    except BAD_IMAGE_ERRORS as e:
        raise _incomplete(name, base, f"cannot read {shown(path)} ({reason(e)})") from None
    crop = rgb.crop((box[0], box[1], box[2], box[3])) if box else rgb
    return np.asarray(crop.resize((SIDE, SIDE), Image.Resampling.BILINEAR))


def build_cache(root: Path, split: str, out: Path) -> None:
    """Download (or reuse) torchvision's GTSRB under ``root`` and write ``out`` (uint8 arrays)."""
    from torchvision.datasets import GTSRB

    base, name = Path(root) / "gtsrb", f"gtsrb:{split}"
    target = base / "GTSRB" / ("Training" if split == "train" else "Final_Test/Images")
    if target.is_dir():  # torchvision takes any such folder as a whole download: check it is one
        _check_complete(base, split, name)
    try:
        ds = GTSRB(root=str(root), split=split, download=True)
    except Exception as e:  # noqa: BLE001  (urllib, HTTP and archive errors all mean the same here)
        raise PatchscopeError(
            f"{name}: set root or PATCHSCOPE_DATA to a folder holding gtsrb32.npz; there is no "
            f"{root / 'gtsrb32.npz'} and torchvision's download failed ({e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no network?'})",
            params=("root",),
        ) from None
    _check_complete(base, split, name)
    boxes = _rois(base, name)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    tracks: list[int] = []
    for path, label in ds._samples:  # the list of (file, class) torchvision built
        xs.append(_sign(path, boxes.get(str(Path(path).resolve())), name, base))
        ys.append(label)
        stem = Path(path).stem
        tracks.append(int(stem.split("_")[0]) + 1000 * label if "_" in stem else len(tracks))
    if not xs:
        raise PatchscopeError(f"{name}: torchvision's GTSRB under {root} holds no images")
    arrays = {f"x_{split}": np.stack(xs), f"y_{split}": np.asarray(ys, np.uint8)}
    if split == "train":
        arrays["train_track"] = np.asarray(tracks, np.int64)
    with atomic_path(out) as tmp:
        with tmp.open("wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
