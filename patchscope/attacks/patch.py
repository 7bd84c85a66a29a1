"""Patches: pixels in [0,1] plus a shape mask, sized as a fraction of the image area; saved and loaded safely. A
:class:`Patch` is one patch (a universal attack's); :class:`PerImagePatches` one patch for each attacked image."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from patchscope.errors import PatchscopeError
from patchscope.formatting import an, pct
from patchscope.io import atomic_path
from patchscope.validate import MAX_IMAGE_SIZE

SHAPES = ("square", "circle")


def is_named_shape(shape: object) -> bool:
    """Whether ``shape`` is drawn by :func:`shape_mask` itself (``square``, ``circle``, ``rect:W:H``), not a file.

    >>> is_named_shape("rect:1:2"), is_named_shape("mask.png")
    (True, False)
    """
    return isinstance(shape, str) and (shape in SHAPES or shape.startswith("rect:"))


def shape_mask(shape: str, side: int) -> torch.Tensor:
    """A ``(side, side)`` float mask in {0, 1}: ``square``, ``circle``, ``rect:W:H`` or a path to a mask image.

    ``rect:W:H`` is a centred rectangle with width:height W:H, its long side the full ``side``.

    >>> shape_mask("circle", 5).sum().item() < 25
    True
    >>> shape_mask("rect:1:2", 14).sum(0).nonzero().flatten().tolist()  # 7 columns, 14 rows
    [3, 4, 5, 6, 7, 8, 9]
    """
    if shape == "square":
        return torch.ones(side, side)
    if shape.startswith("rect:"):
        return _rectangle(shape, side)
    if shape == "circle":
        c = (side - 1) / 2
        yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        return (((yy - c) ** 2 + (xx - c) ** 2) <= (side / 2) ** 2 + 1e-6).float()
    return _mask_from_image(Path(shape), side)


def _rectangle(shape: str, side: int) -> torch.Tensor:
    try:
        w, h = (float(v) for v in shape.split(":")[1:])
        if not (w > 0 and h > 0 and math.isfinite(w / h)):
            raise ValueError
    except ValueError:
        raise PatchscopeError(
            f"shape {shape}: give a rectangle's width:height as rect:W:H with W, H > 0, e.g. rect:1:2",
            params=("shape",),
        ) from None
    cols, rows = (max(1, round(side * min(1.0, r))) for r in (w / h, h / w))
    mask = torch.zeros(side, side)
    top, left = (side - rows) // 2, (side - cols) // 2
    mask[top : top + rows, left : left + cols] = 1.0
    return mask


def _mask_from_image(path: Path, side: int) -> torch.Tensor:
    from PIL import Image

    from patchscope.data.images import BAD_IMAGE_ERRORS, open_image, reason, shown, to_rgb8

    try:
        with open_image(path) as im:
            band = im.getchannel("A") if "A" in im.getbands() else to_rgb8(im).convert("L")
            m = band.resize((side, side), Image.Resampling.NEAREST)
    except FileNotFoundError:
        raise PatchscopeError(
            f"shape {shown(path)}: not square, circle, rect:W:H, nor an existing mask image", params=("shape",)
        ) from None
    except BAD_IMAGE_ERRORS as e:
        raise PatchscopeError(f"shape {shown(path)}: cannot read mask image ({reason(e)})", params=("shape",)) from None
    mask = (torch.frombuffer(bytearray(m.tobytes()), dtype=torch.uint8).view(side, side) > 127).float()
    if mask.sum() == 0:
        raise PatchscopeError(f"shape {path}: the mask is empty", params=("shape",))
    return mask


def patch_side(fraction: float, image_size: int, shape: str = "square") -> int:
    """Side in pixels of a patch covering ``fraction`` of an ``image_size``-square image.

    >>> patch_side(0.05, 32)
    7
    """
    if not 0 < fraction < 1:
        raise PatchscopeError(f"patch size {fraction} must be a fraction of the image area, 0 < size < 1")
    fill = 1.0 if shape == "square" else float(shape_mask(shape, 64).mean())
    side = max(1, round(math.sqrt(fraction * image_size**2 / fill)))
    if side > image_size:
        raise PatchscopeError(f"{an(pct(fraction))} {shape} patch ({side}px) is larger than the {image_size}px image")
    return side


class _Sized:
    """The side and the area of patches ``pixels`` (..., 3, s, s) under ``mask`` (s, s) on ``image_size``-px images."""

    pixels: torch.Tensor
    mask: torch.Tensor
    image_size: int

    @property
    def side(self) -> int:
        return int(self.pixels.shape[-1])

    @property
    def area_fraction(self) -> float:
        """Share of the image area a patch covers."""
        return float(self.mask.sum()) / self.image_size**2


@dataclass
class Patch(_Sized):
    """A patch: ``pixels`` (3, s, s) in [0,1], ``mask`` (s, s), where it goes, and what made it."""

    pixels: torch.Tensor
    mask: torch.Tensor
    placement: str = "sticker"
    location: tuple[int, int] | None = None  # (top, left) in the image, for on-object
    image_size: int = 32
    meta: dict[str, Any] = field(default_factory=dict)

    def resized(self, image_size: int) -> Patch:
        """The same patch for ``image_size``-px images: the same share of the image and the same relative place
        (the same sticker on the same sign, seen at another resolution). Pixels are resampled bilinearly with
        antialiasing, like ``SPEC@N`` data; the mask by nearest neighbour.

        >>> p = Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (10, 20), 32)
        >>> q = p.resized(64)
        >>> q.side, q.location, q.image_size, q.area_fraction == p.area_fraction
        (14, (20, 40), 64, True)
        """
        if image_size == self.image_size:
            return self
        scale = image_size / self.image_size
        side = min(image_size, max(1, round(self.side * scale)))
        pixels = F.interpolate(self.pixels[None].float(), (side, side), mode="bilinear", antialias=True)
        mask = F.interpolate(self.mask[None, None].float(), (side, side), mode="nearest")[0, 0]
        location = None
        if self.location is not None:
            top, left = (min(round(v * scale), image_size - side) for v in self.location)
            location = (top, left)
        meta = {**self.meta, "resized_from": self.image_size}
        return replace(
            self, pixels=pixels[0].clamp(0, 1), mask=mask, location=location, image_size=image_size, meta=meta
        )

    def save(self, folder: Path) -> None:
        """Write ``patch.safetensors`` and ``patch.png`` (RGBA; alpha is the mask) into ``folder``."""
        meta = {
            "placement": self.placement,
            "location": json.dumps(self.location),
            "image_size": str(self.image_size),
            "meta": json.dumps(self.meta),
        }
        tensors = {
            "pixels": self.pixels.detach().float().cpu().contiguous(),
            "mask": self.mask.float().cpu().contiguous(),
        }
        with atomic_path(folder / "patch.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        self.to_png(folder / "patch.png")

    def to_png(self, path: Path, scale: int = 1) -> None:
        """Save the patch as an RGBA PNG (alpha = mask), optionally enlarged ``scale`` times."""
        from PIL import Image

        rgba = torch.cat([self.pixels.detach().cpu(), self.mask.cpu()[None]], 0).mul(255).round().byte()
        img = Image.fromarray(rgba.permute(1, 2, 0).numpy(), "RGBA")
        if scale > 1:
            img = img.resize((self.side * scale, self.side * scale), Image.Resampling.NEAREST)
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG")

    @classmethod
    def load(cls, path: str | Path) -> Patch:
        """Read a patch from a run folder or a ``patch.safetensors`` file (the low-level reader of
        :func:`~patchscope.attacks.load.load_patch`, which also takes zoo names and per-image patches)."""
        path = Path(path)
        file = path / "patch.safetensors" if path.is_dir() else path
        if path.name == "patches.safetensors" or (not file.exists() and (path / "patches.safetensors").exists()):
            raise PatchscopeError(
                f"patch {path}: per-image patches (the per-image attack's) are measured by evaluate only",
                params=("patch",),
            )
        if not file.exists():
            raise PatchscopeError(f"patch {path}: no patch.safetensors there", params=("patch",))
        try:
            t = load_file(str(file))
            from safetensors import safe_open

            with safe_open(str(file), "pt") as fh:
                meta = fh.metadata() or {}
            pixels, mask = t["pixels"], t["mask"]
            location = json.loads(meta.get("location", "null"))
            if location is not None and not (
                isinstance(location, list) and len(location) == 2 and all(type(v) is int and v >= 0 for v in location)
            ):
                raise ValueError(f"location must be [top, left] in whole pixels, got {meta.get('location')}")
            patch = cls(
                pixels,
                mask,
                meta.get("placement", "sticker"),
                tuple(location) if location else None,
                int(meta.get("image_size", 32)),
                json.loads(meta.get("meta", "{}")),
            )
            if not isinstance(patch.meta, dict):
                raise ValueError("meta is not a JSON object")
        except (SafetensorError, KeyError, ValueError, OSError, TypeError) as e:
            raise PatchscopeError(
                f"patch {file}: not a patchscope patch ({str(e).splitlines()[0][:120]})", params=("patch",)
            ) from None
        try:
            patch.check()
        except PatchscopeError as e:
            raise PatchscopeError(f"patch {file}: {e}", params=("patch",)) from None
        return patch

    def check(self) -> None:
        """Refuse a patch whose tensors or fields make no sense (one line naming the first problem)."""
        side = self._check_shapes()
        _check_pixel_values(self.pixels)
        _check_mask_values(self.mask)
        self._check_place(side)

    def _check_shapes(self) -> int:
        """The patch side, once the image size, the pixels' and the mask's shapes agree."""
        pixels, mask = self.pixels, self.mask
        if not isinstance(self.image_size, int) or not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise PatchscopeError(f"image_size must be in 1..{MAX_IMAGE_SIZE}, got {self.image_size!r}")
        if pixels.ndim != 3 or pixels.shape[0] != 3 or pixels.shape[1] != pixels.shape[2]:
            raise PatchscopeError(f"pixels must be a square RGB tensor (3, S, S), got shape {tuple(pixels.shape)}")
        side = pixels.shape[-1]
        if not 1 <= side <= self.image_size:
            raise PatchscopeError(f"the patch side must be in 1..{self.image_size} (its image size), got {side}")
        if tuple(mask.shape) != (side, side):
            raise PatchscopeError(f"mask must be ({side}, {side}) like the pixels, got shape {tuple(mask.shape)}")
        return side

    def _check_place(self, side: int) -> None:
        """Refuse an unknown placement, or a location that puts the ``side`` px patch off the image."""
        if self.placement not in ("sticker", "on-object"):
            raise PatchscopeError(f"placement must be sticker or on-object, got {self.placement!r}")
        if self.location is not None:
            free = self.image_size - side
            if len(self.location) != 2 or not all(isinstance(v, int) and 0 <= v <= free for v in self.location):
                raise PatchscopeError(
                    f"location must be (top, left) in 0..{free} to keep the {side}px patch on the "
                    f"{self.image_size}px image, got {self.location!r}"
                )


def _check_pixel_values(pixels: torch.Tensor) -> None:
    """Refuse pixels that are not finite floats in [0, 1]."""
    if not pixels.is_floating_point():
        raise PatchscopeError(f"pixels must be float numbers in [0, 1], got {pixels.dtype}")
    if not bool(torch.isfinite(pixels).all()):
        raise PatchscopeError(
            f"pixels must be finite numbers in [0, 1], got {int((~torch.isfinite(pixels)).sum())} NaN or inf values"
        )
    if float(pixels.min()) < 0 or float(pixels.max()) > 1:
        raise PatchscopeError(
            f"pixels must be in [0, 1], got values in [{float(pixels.min()):g}, {float(pixels.max()):g}]"
        )


def _check_mask_values(mask: torch.Tensor) -> None:
    """Refuse a mask that holds anything but 0 and 1, or no 1 at all."""
    if (
        not mask.is_floating_point()
        or not bool(torch.isfinite(mask).all())
        or not bool(((mask == 0) | (mask == 1)).all())
    ):
        raise PatchscopeError("mask must hold only 0 and 1")
    if float(mask.sum()) == 0:
        raise PatchscopeError("mask is empty: the patch covers no pixel")


PER_IMAGE_FILE = "patches.safetensors"


@dataclass
class PerImagePatches(_Sized):
    """``pixels`` (N, 3, s, s) in [0,1], one patch for image n of the attacked set; ``mask`` (s, s);
    ``location`` (N, 2) (top, left) for on-object patches, else None; ``images_hash`` names the images
    (in order) they belong to, so that an evaluation on other images is refused."""

    pixels: torch.Tensor
    mask: torch.Tensor
    placement: str = "on-object"
    location: torch.Tensor | None = None
    image_size: int = 32
    images_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def save(self, folder: Path) -> None:
        """Write ``patches.safetensors`` and ``patches.png`` (the first 64 patches side by side, RGBA)."""
        tensors = {
            "pixels": self.pixels.detach().float().cpu().contiguous(),
            "mask": self.mask.float().cpu().contiguous(),
        }
        if self.location is not None:
            tensors["location"] = self.location.detach().float().cpu().contiguous()
        meta = {
            "placement": self.placement,
            "image_size": str(self.image_size),
            "images_hash": self.images_hash,
            "meta": json.dumps(self.meta),
        }
        with atomic_path(folder / PER_IMAGE_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        self._sheet(folder / "patches.png")

    def _sheet(self, path: Path, columns: int = 16) -> None:
        from PIL import Image

        shown = self.pixels[:64].detach().cpu()
        n, s = len(shown), self.side
        rows = math.ceil(n / columns)
        sheet = torch.zeros(4, rows * (s + 1), min(n, columns) * (s + 1))
        for i in range(n):  # at most 64 small tiles for a picture, not a hot path
            top, left = (i // columns) * (s + 1), (i % columns) * (s + 1)
            sheet[:3, top : top + s, left : left + s] = shown[i]
            sheet[3, top : top + s, left : left + s] = self.mask.cpu()
        img = Image.fromarray(sheet.mul(255).round().byte().permute(1, 2, 0).numpy(), "RGBA")
        with atomic_path(path) as tmp:
            img.resize((img.width * 4, img.height * 4), Image.Resampling.NEAREST).save(tmp, format="PNG")

    @classmethod
    def load(cls, path: str | Path) -> PerImagePatches:
        """Load from a run folder or a ``patches.safetensors`` file."""
        path = Path(path)
        file = path / PER_IMAGE_FILE if path.is_dir() else path
        try:
            t = load_file(str(file))
            with safe_open(str(file), "pt") as fh:
                meta = fh.metadata() or {}
            out = cls(
                t["pixels"],
                t["mask"],
                meta.get("placement", "on-object"),
                t.get("location"),
                int(meta.get("image_size", 32)),
                meta.get("images_hash", ""),
                json.loads(meta.get("meta", "{}")),
            )
        except (SafetensorError, KeyError, ValueError, OSError, TypeError) as e:
            raise PatchscopeError(
                f"patch {file}: not a patchscope per-image patch file ({str(e).splitlines()[0][:120]})",
                params=("patch",),
            ) from None
        pixels, n = out.pixels, len(out.pixels)
        if pixels.ndim != 4 or n == 0:
            raise PatchscopeError(
                f"patch {file}: pixels must be (N, 3, S, S) with N >= 1, got shape {tuple(pixels.shape)}",
                params=("patch",),
            )
        for i in (0, n - 1):  # the shared checks of one patch, on the first and the last
            loc = (
                (int(out.location[i, 0]), int(out.location[i, 1]))
                if out.location is not None and tuple(out.location.shape) == (n, 2)
                else None
            )
            try:
                Patch(pixels[i], out.mask, out.placement, loc, out.image_size).check()
            except PatchscopeError as e:
                raise PatchscopeError(f"patch {file}: {e}", params=("patch",)) from None
        if not bool(torch.isfinite(pixels).all()) or float(pixels.min()) < 0 or float(pixels.max()) > 1:
            raise PatchscopeError(f"patch {file}: pixels must be finite numbers in [0, 1]", params=("patch",))
        if out.location is not None:
            free = out.image_size - out.side
            if tuple(out.location.shape) != (n, 2) or bool(((out.location < 0) | (out.location > free)).any()):
                raise PatchscopeError(
                    f"patch {file}: location must be (N, 2) places in 0..{free}, got shape {tuple(out.location.shape)}",
                    params=("patch",),
                )
        return out


def patch_zoo_dir() -> Path:
    """The folder of bundled pre-optimised patches: ``zoo/MODEL/NAME/patch.safetensors``."""
    from importlib import resources

    return Path(str(resources.files("patchscope.attacks").joinpath("zoo")))


def list_patches() -> list[str]:
    """Names of the bundled patches, ``MODEL/NAME``, loadable as ``--patch zoo:MODEL/NAME``."""
    root = patch_zoo_dir()
    return sorted(str(p.parent.relative_to(root)) for p in root.glob("*/*/patch.safetensors"))
