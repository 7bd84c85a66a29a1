"""A patch placed on an image by hand, and what the camera sees of both: the attacks' own EOT code
(:func:`~patchscope.attacks.eot.fixed_view`, :func:`~patchscope.attacks.eot.render`) for one image and one view.

A :class:`Placement` says where the patch sits on the image (its centre, scale and rotation: a sticker put there by
hand); a :class:`Camera` how the patched sign is seen (in-plane rotation, tilt, distance, light, focus).
:func:`render_scene` makes the clean and the patched view and the patch's footprint in the view.

>>> import torch
>>> patch = blank_patch(32, 0.1)
>>> s = render_scene(torch.rand(3, 32, 32), patch, Placement(16.0, 16.0), Camera())
>>> s.clean.shape, s.patched.shape, int(s.footprint.sum()) == patch.side**2
(torch.Size([1, 3, 32, 32]), torch.Size([1, 3, 32, 32]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from patchscope.attacks.eot import ViewParams, camera_matrix, fixed_view, paste, render, render_clean, warp_homography
from patchscope.attacks.patch import Patch
from patchscope.errors import PatchscopeError
from patchscope.validate import check_range

#: (low, high) of every camera setting the explorer offers; angles in degrees, ``blur`` a Gaussian sigma in pixels
CAMERA_LIMITS: dict[str, tuple[float, float]] = {
    "rotation": (-180.0, 180.0),
    "yaw": (-75.0, 75.0),
    "distance": (0.5, 4.0),
    "brightness": (0.2, 2.0),
    "blur": (0.0, 3.0),
}
#: the patch's scale on the image, from a tenth to eight times its own size
SCALE_LIMITS = (0.1, 8.0)


@dataclass(frozen=True)
class Placement:
    """Where the patch sits on the image, before the camera: its centre ``(row, col)`` in pixels of the model's input
    (pixel edges: the image's centre is ``size / 2``), its ``scale`` (1: its own size) and ``rotation`` in degrees
    (clockwise on screen)."""

    row: float
    col: float
    scale: float = 1.0
    rotation: float = 0.0

    def __post_init__(self) -> None:
        check_range("row", self.row, -1e4, 1e4)
        check_range("col", self.col, -1e4, 1e4)
        check_range("scale", self.scale, *SCALE_LIMITS)
        check_range("rotation", self.rotation, -360.0, 360.0)

    @classmethod
    def of(cls, patch: Patch, image_size: int) -> Placement:
        """Where ``patch`` was made to sit: its ``location`` (an on-object patch's), else the image's centre."""
        if patch.location is None:
            return cls(image_size / 2, image_size / 2)
        top, left = patch.location
        return cls(top + patch.side / 2, left + patch.side / 2)


@dataclass(frozen=True)
class Camera:
    """How the patched sign is seen: in-plane ``rotation`` and ``yaw`` (tilt: the sign turned about its upright axis),
    in degrees, ``distance`` (1: as the image was taken; 2: twice as far, half the size), ``brightness`` (a factor) and
    ``blur`` (a Gaussian sigma in pixels). Limits: :data:`CAMERA_LIMITS`."""

    rotation: float = 0.0
    yaw: float = 0.0
    distance: float = 1.0
    brightness: float = 1.0
    blur: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            check_range(f.name, getattr(self, f.name), *CAMERA_LIMITS[f.name])


@dataclass(frozen=True)
class Scene:
    """One rendered view: the image without and with the patch, ``(1, 3, H, W)`` in [0, 1], and the patch's
    ``footprint`` in the view, ``(H, W)`` bool (where at least half a pixel is patch)."""

    clean: torch.Tensor
    patched: torch.Tensor
    footprint: torch.Tensor

    def box_side(self) -> int:
        """The side of the smallest square around the footprint, in pixels (0 when the patch is out of view)."""
        rows, cols = self.footprint.any(1).nonzero(), self.footprint.any(0).nonzero()
        if len(rows) == 0:
            return 0
        return int(max(rows[-1] - rows[0], cols[-1] - cols[0])) + 1


def view_params(image_size: int, side: int, placement: Placement, camera: Camera) -> ViewParams:
    """One row of :class:`~patchscope.attacks.eot.ViewParams`: a ``side`` px sticker at ``placement``, seen by
    ``camera`` (the same parameters the attacks sample, here set by hand)."""
    top, left = placement.row - side / 2, placement.col - side / 2
    return fixed_view(
        1,
        image_size,
        side,
        "sticker",
        location=(top, left),  # type: ignore[arg-type]  # a sticker's place may be fractional
        patch_rotation=placement.rotation,
        patch_scale=placement.scale,
        rotation=camera.rotation,
        yaw=camera.yaw,
        scale=1 / camera.distance,
        brightness=camera.brightness,
        blur=camera.blur,
    )


def render_scene(image: torch.Tensor, patch: Patch | None, placement: Placement, camera: Camera) -> Scene:
    """The clean and the patched view of ``image`` (3, H, H) in [0, 1] with ``patch`` (made for H px images; None:
    no patch) at ``placement``, seen by ``camera``. The patch's pixels and mask are those of the attacks' ``render``."""
    x = image[None].float()
    size = x.shape[-1]
    if patch is None:
        p = view_params(size, 1, placement, camera)
        clean = render_clean(x, p)
        return Scene(clean, clean, torch.zeros(size, size, dtype=torch.bool))
    if patch.image_size != size:
        raise PatchscopeError(f"the patch was made for {patch.image_size}px images, the image is {size}px")
    p = view_params(size, patch.side, placement, camera)
    pixels, mask = patch.pixels.to(x.device), patch.mask.to(x.device)
    alpha = paste(torch.zeros(1, 1, size, size, device=x.device), torch.ones(1, patch.side, patch.side), mask, p)
    seen = warp_homography(alpha, camera_matrix(p, size), padding="zeros")[0, 0] >= 0.5
    return Scene(render_clean(x, p), render(x, pixels, mask, p), seen.cpu())


def blank_patch(image_size: int, fraction: float = 0.1) -> Patch:
    """A plain grey square covering ``fraction`` of an ``image_size`` px image: something to place and optimise.

    >>> blank_patch(32).side
    10
    """
    side = max(1, min(image_size, round(math.sqrt(fraction) * image_size)))
    meta = {"name": "blank"}
    return Patch(torch.full((3, side, side), 0.5), torch.ones(side, side), "sticker", None, image_size, meta)


def patch_from_rgba(rgba: torch.Tensor, image_size: int, most: float = 0.5) -> Patch:
    """A patch from an RGBA (or RGB) picture ``(4 or 3, h, w)`` uint8: the alpha channel (over half) is its shape, a
    non-square picture is centred on a square, and one wider than ``most`` of the image is shrunk to that.

    >>> p = patch_from_rgba(torch.full((4, 6, 10), 255, dtype=torch.uint8), 32)
    >>> p.side, int(p.mask.sum())
    (10, 60)
    """
    if rgba.ndim != 3 or rgba.shape[0] not in (3, 4) or rgba.dtype != torch.uint8:
        raise PatchscopeError(f"a patch picture must be uint8 RGB or RGBA (C, h, w), got {tuple(rgba.shape)}")
    h, w = rgba.shape[1:]
    alpha = rgba[3] > 127 if rgba.shape[0] == 4 else torch.ones(h, w, dtype=torch.bool)
    if not bool(alpha.any()):
        raise PatchscopeError("the patch picture is fully transparent: its alpha channel shows nothing")
    side = max(h, w)
    square = torch.zeros(4, side, side)
    top, left = (side - h) // 2, (side - w) // 2
    square[:3, top : top + h, left : left + w] = rgba[:3].float() / 255
    square[3, top : top + h, left : left + w] = alpha.float()
    largest = max(1, round(most * image_size))
    if side > largest:
        pixels = F.interpolate(square[None, :3], (largest, largest), mode="bilinear", antialias=True)[0]
        mask = F.interpolate(square[None, 3:], (largest, largest), mode="nearest")[0, 0]
        square = torch.cat([pixels.clamp(0, 1), mask[None]])
    if float(square[3].sum()) == 0:
        raise PatchscopeError("the patch picture's shape vanishes at this image size: give a larger picture")
    return Patch(square[:3], square[3], "sticker", None, image_size, {"name": "upload"})
