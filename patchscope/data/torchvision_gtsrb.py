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


def _rois(base: Path) -> dict[str, tuple[int, int, int, int]]:
    """Map each image path (resolved) to its ROI box, from every ``GT-*.csv`` under ``base``."""
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for sheet in base.rglob("GT-*.csv"):
        with sheet.open(newline="") as fh:
            for row in csv.DictReader(fh, delimiter=";"):
                x1, y1, x2, y2 = (int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
                box = (x1, y1, x2, y2)
                name = row["Filename"]
                for folder in (sheet.parent, sheet.parent / "GTSRB" / "Final_Test" / "Images"):
                    boxes[str((folder / name).resolve())] = box
    return boxes


def _sign(path: str, box: tuple[int, ...] | None, name: str, root: Path) -> np.ndarray:
    """One frame's sign: its region of interest (the whole frame without one) at SIDE x SIDE, uint8 (H, W, 3)."""
    from PIL import Image

    try:
        rgb = read_rgb8(path)
    except BAD_IMAGE_ERRORS as e:
        raise PatchscopeError(
            f"{name}: cannot read {shown(path)} ({reason(e)}); the download under {shown(root)} is incomplete: "
            "remove it and download again",
            params=("root",),
        ) from None
    crop = rgb.crop((box[0], box[1], box[2], box[3])) if box else rgb
    return np.asarray(crop.resize((SIDE, SIDE), Image.Resampling.BILINEAR))


def build_cache(root: Path, split: str, out: Path) -> None:
    """Download (or reuse) torchvision's GTSRB under ``root`` and write ``out`` (uint8 arrays)."""
    from torchvision.datasets import GTSRB

    try:
        ds = GTSRB(root=str(root), split=split, download=True)
    except Exception as e:  # noqa: BLE001  (urllib, HTTP and archive errors all mean the same here)
        raise PatchscopeError(
            f"gtsrb:{split}: set root or PATCHSCOPE_DATA to a folder holding gtsrb32.npz; there is no "
            f"{root / 'gtsrb32.npz'} and torchvision's download failed ({e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no network?'})",
            params=("root",),
        ) from None
    boxes = _rois(Path(root) / "gtsrb")
    xs: list[np.ndarray] = []
    ys: list[int] = []
    tracks: list[int] = []
    for path, label in ds._samples:  # the list of (file, class) torchvision built
        xs.append(_sign(path, boxes.get(str(Path(path).resolve())), f"gtsrb:{split}", root))
        ys.append(label)
        stem = Path(path).stem
        tracks.append(int(stem.split("_")[0]) + 1000 * label if "_" in stem else len(tracks))
    if not xs:
        raise PatchscopeError(f"gtsrb:{split}: torchvision's GTSRB under {root} holds no images")
    arrays = {f"x_{split}": np.stack(xs), f"y_{split}": np.asarray(ys, np.uint8)}
    if split == "train":
        arrays["train_track"] = np.asarray(tracks, np.int64)
    with atomic_path(out) as tmp:
        with tmp.open("wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
