"""Expectation over Transformation, split kornia-style into *sampling* parameters and *applying* them.

`sample_view` draws a :class:`ViewParams` (one row per image) from :class:`ViewRanges` with a seeded
generator; `render` applies them: paste the patch (``sticker``: its own random place, rotation and
scale; ``on-object``: a fixed place on the sign), then the camera (perspective tilt, rotation,
distance, shift) and the light (brightness, contrast, per-channel gain, blur, JPEG-like loss, noise).
Replaying the same parameters reproduces the output exactly; everything is batched and differentiable.

>>> import torch
>>> r = ViewRanges()
>>> p = sample_view(4, r, image_size=32, side=7, placement="sticker", generator=torch.Generator().manual_seed(0))
>>> x, pix, m = torch.rand(4, 3, 32, 32), torch.rand(3, 7, 7), torch.ones(7, 7)
>>> torch.equal(render(x, pix, m, p), render(x, pix, m, p))
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable

PLACEMENTS = ("sticker", "on-object")


@dataclass(frozen=True)
class ViewRanges:
    """Ranges the EOT samples each :class:`ViewParams` factor from, by the same names: a float is a half-width
    around the factor's :data:`NEUTRAL` value (``rotation=15``: -15..15 degrees; ``gain=0.05``: 0.95..1.05 per
    channel; ``shift``: a fraction of the image side), a pair is (low, high); ``jpeg`` a quality range or None."""

    rotation: float = 15.0
    yaw: float = 15.0
    pitch: float = 15.0
    scale: tuple[float, float] = (0.85, 1.0)
    shift: float = 0.0
    brightness: tuple[float, float] = (0.7, 1.3)
    contrast: tuple[float, float] = (0.9, 1.1)
    gain: float = 0.05
    blur: tuple[float, float] = (0.0, 0.6)
    noise: float = 0.01
    jpeg: tuple[float, float] | None = None
    patch_rotation: float = 20.0
    patch_scale: tuple[float, float] = (0.9, 1.1)

    @property
    def still(self) -> bool:
        """True when every camera and light stage is the identity (``NO_CHANGE``'s view): :func:`view` then returns its
        input up to float rounding, and an attack may skip it (stickers alone, as in Brown et al. and ART)."""
        identity = (tuple(self.scale), tuple(self.brightness), tuple(self.contrast)) == ((1.0, 1.0),) * 3
        return identity and not (
            self.rotation
            or self.yaw
            or self.pitch
            or self.shift
            or self.gain
            or self.blur[1]
            or self.noise
            or self.jpeg
        )


#: the neutral view: each factor's value where it changes nothing (a condition names only the factors away from it)
NEUTRAL: dict[str, float] = {
    "rotation": 0.0,
    "yaw": 0.0,
    "pitch": 0.0,
    "scale": 1.0,
    "brightness": 1.0,
    "contrast": 1.0,
    "gain": 1.0,
    "blur": 0.0,
    "noise": 0.0,
    "patch_rotation": 0.0,
    "patch_scale": 1.0,
}

#: ranges that draw only the :data:`NEUTRAL` view (a sticker placed as drawn, nothing else changed)
NO_CHANGE = ViewRanges(
    rotation=0.0,
    yaw=0.0,
    pitch=0.0,
    scale=(1.0, 1.0),
    brightness=(1.0, 1.0),
    contrast=(1.0, 1.0),
    gain=0.0,
    blur=(0.0, 0.0),
    noise=0.0,
    patch_rotation=0.0,
    patch_scale=(1.0, 1.0),
)


@dataclass
class ViewParams:
    """One row per image. Angles in degrees; ``location`` is the patch's (top, left) in pixels."""

    location: torch.Tensor  # (N, 2)
    patch_rotation: torch.Tensor  # (N,)
    patch_scale: torch.Tensor  # (N,)
    rotation: torch.Tensor  # (N,)
    yaw: torch.Tensor  # (N,)
    pitch: torch.Tensor  # (N,)
    scale: torch.Tensor  # (N,)
    shift: torch.Tensor  # (N, 2) in pixels
    brightness: torch.Tensor  # (N,)
    contrast: torch.Tensor  # (N,)
    gain: torch.Tensor  # (N, 3)
    blur: torch.Tensor  # (N,) Gaussian sigma in pixels
    noise: torch.Tensor  # (N, 3, H, W), already scaled
    jpeg: torch.Tensor | None = None  # (N,) quality
    patch_gain: torch.Tensor | None = None  # (N, 3) the sign's own lighting on the patch (see relight)
    patch_offset: torch.Tensor | None = None  # (N, 3)
    placement: str = "sticker"
    blur_kernel: int = 3  # odd kernel side covering the largest sigma the ranges allow

    def __len__(self) -> int:
        return int(self.rotation.shape[0])

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> ViewParams:
        """A copy with ``fn`` applied to every tensor field (the others kept)."""
        mapped: dict[str, Any] = {name: fn(t) for name, t in self.as_dict().items()}
        return replace(self, **mapped)

    def to(self, device: str | torch.device) -> ViewParams:
        return self._map(lambda t: t.to(device))

    def __getitem__(self, index: slice | torch.Tensor) -> ViewParams:
        return self._map(lambda t: t[index])

    @classmethod
    def cat(cls, parts: list[ViewParams]) -> ViewParams:
        """Stack several parameter sets (same placement) row-wise."""
        tensors: dict[str, Any] = {k: torch.cat([getattr(p, k) for p in parts]) for k in parts[0].as_dict()}
        return replace(parts[0], **tensors, blur_kernel=max(p.blur_kernel for p in parts))

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The tensors, for logging or saving with safetensors."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}


@functools.lru_cache(maxsize=64)
def _spans(bounds: tuple[tuple[float, float], ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, 1) widths and lower ends of K uniform ranges, made once per device (no per-step host copies)."""
    return torch.tensor([[hi - lo] for lo, hi in bounds], device=device), torch.tensor(
        [[lo] for lo, _ in bounds], device=device
    )


def _uniform_rows(n: int, bounds: tuple[tuple[float, float], ...], g: torch.Generator) -> torch.Tensor:
    """(K, n): row k uniform in ``bounds[k]``, in one draw. On the CPU the values are bit for bit those of
    K successive ``rand(n) * (hi - lo) + lo`` draws (same generator order, same float32 multiply and add);
    on CUDA one Philox call replaces K, so a seed gives other (equally distributed) values there."""
    span, lo = _spans(bounds, g.device)
    return torch.rand(len(bounds), n, generator=g, device=g.device) * span + lo


def sample_view(
    n: int,
    ranges: ViewRanges,
    image_size: int,
    side: int,
    placement: str = "sticker",
    location: tuple[int, int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> ViewParams:
    """Draw ``n`` rows of :class:`ViewParams` on the generator's device.

    ``on-object`` keeps the patch at ``location`` (default: the centre); ``sticker`` draws a location
    anywhere the patch fits, plus its own rotation and scale. All factors before the noise come from one
    draw, the noise level and JPEG quality from a second, so a step costs a handful of kernels.
    """
    g = generator or torch.Generator()
    free = image_size - side
    sticker = placement == "sticker"
    r = ranges
    u = _uniform_rows(n, _view_bounds(r, free, sticker), g).unbind(0)
    if sticker:
        loc, patch_rotation, patch_scale, u = torch.stack(u[:2], 1).round(), u[2], u[3], u[4:]
    else:
        loc, patch_rotation, patch_scale = (
            _location_rows(n, location, free, g.device),
            torch.zeros(n, device=g.device),
            torch.ones(n, device=g.device),
        )
    noise = torch.randn(n, 3, image_size, image_size, generator=g, device=g.device)
    late_bounds: tuple[tuple[float, float], ...] = ((0.0, float(r.noise)),)
    if r.jpeg:
        late_bounds += ((float(r.jpeg[0]), float(r.jpeg[1])),)
    late = _uniform_rows(n, late_bounds, g)
    return ViewParams(
        location=loc,
        patch_rotation=patch_rotation,
        patch_scale=patch_scale,
        rotation=u[0],
        yaw=u[1],
        pitch=u[2],
        scale=u[3],
        shift=torch.stack(u[4:6], 1) * image_size,
        brightness=u[6],
        contrast=u[7],
        gain=torch.stack(u[8:11], 1),
        blur=u[11],
        noise=noise * late[0].view(n, 1, 1, 1),
        jpeg=late[1] if r.jpeg else None,
        placement=placement,
        blur_kernel=kernel_side(r.blur[1]),
    )


def _view_bounds(r: ViewRanges, free: int, sticker: bool) -> tuple[tuple[float, float], ...]:
    """The (low, high) of every factor :func:`sample_view` draws at once, in its order: a sticker's location,
    rotation and scale first (``free``: the last top or left that fits), then the view's."""
    bounds: tuple[tuple[float, float], ...] = (
        ((0.0, free), (0.0, free), (-r.patch_rotation, r.patch_rotation), r.patch_scale) if sticker else ()
    )
    bounds += (
        (-r.rotation, r.rotation),
        (-r.yaw, r.yaw),
        (-r.pitch, r.pitch),
        r.scale,
        (-r.shift, r.shift),
        (-r.shift, r.shift),
        r.brightness,
        r.contrast,
    )
    bounds += ((1 - r.gain, 1 + r.gain),) * 3 + (r.blur,)
    return tuple((float(lo), float(hi)) for lo, hi in bounds)


def _location_rows(
    n: int, location: tuple[int, int] | torch.Tensor | None, free: int, device: torch.device
) -> torch.Tensor:
    if location is None:
        return torch.full((n, 2), float(free // 2), device=device)
    loc = torch.as_tensor(location, dtype=torch.float32, device=device)
    return loc.expand(n, 2).clone() if loc.ndim == 1 else loc


def fixed_view(
    n: int,
    image_size: int,
    side: int,
    placement: str = "on-object",
    location: tuple[int, int] | torch.Tensor | None = None,
    **values: float,
) -> ViewParams:
    """``n`` rows for one viewing condition (``rotation=``, ``yaw=``, ``brightness=``...), the patch at
    ``location`` (one place, or (n, 2) places, one per row).

    Unnamed factors take their no-change value; a sticker without ``location`` sits in the centre.
    """
    p = sample_view(n, NO_CHANGE, image_size, side, "on-object", location)
    p = replace(p, placement=placement)
    for key, value in values.items():
        if key == "noise":
            g = torch.Generator().manual_seed(0)
            p.noise = torch.randn(n, 3, image_size, image_size, generator=g) * value
        elif key == "jpeg":
            p.jpeg = torch.full((n,), float(value))
        elif key == "blur":
            p.blur, p.blur_kernel = torch.full((n,), float(value)), kernel_side(float(value))
        else:
            setattr(p, key, torch.full_like(getattr(p, key), float(value)))
    return p


def camera_matrix(p: ViewParams, size: int) -> torch.Tensor:
    """(N, 3, 3) homographies, source to view: a plane tilted by yaw/pitch seen at focal length ``size``,
    rotated in-plane, scaled (distance) and shifted, all about the image centre."""
    n = len(p)
    c = (size - 1) / 2
    th, ya, pi = torch.deg2rad(torch.stack([p.rotation, p.yaw, p.pitch])).unbind(0)
    zero, one = torch.zeros_like(th), torch.ones_like(th)
    cos, sin = p.scale * torch.cos(th), p.scale * torch.sin(th)
    a = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).view(n, 3, 3)
    # R = Rx(pitch) @ Ry(yaw); homography K [r1 r2 t] / f with t = (0, 0, f)
    cy, sy, cp, sp = torch.cos(ya), torch.sin(ya), torch.cos(pi), torch.sin(pi)
    v = torch.stack([cy, zero, zero, sp * sy, cp, zero, -cp * sy / size, sp / size, one], 1).view(n, 3, 3)
    back = torch.stack([one, zero, c + p.shift[:, 1], zero, one, c + p.shift[:, 0], zero, zero, one], 1).view(n, 3, 3)
    return torch.bmm(
        torch.bmm(torch.bmm(back, v), a), _to_centre(c, th.device, th.dtype).expand(n, 3, 3).contiguous()
    )  # = back @ v @ a @ to_centre


@functools.lru_cache(maxsize=16)
def _to_centre(c: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor([[[1.0, 0.0, -c], [0.0, 1.0, -c], [0.0, 0.0, 1.0]]], device=device, dtype=dtype)


def relight(pixels: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """The patch as a sign's own lighting shows it: ``pixels * gain + offset`` per channel, clipped to [0, 1].
    ``pixels`` (3,s,s) or (N,3,s,s); ``gain``, ``offset`` (N, 3); returns (N, 3, s, s).

    >>> gain, offset = torch.tensor([[2.0, 1.0, 0.5]]), torch.tensor([[0.0, 0.1, 0.0]])
    >>> relight(torch.full((3, 2, 2), 0.5), gain, offset)[0, :, 0, 0]
    tensor([1.0000, 0.6000, 0.2500])
    """
    return (pixels * gain[:, :, None, None] + offset[:, :, None, None]).clamp(0, 1)


def paste(images: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """Put the patch on each image. ``pixels`` (3,s,s) or (N,3,s,s); ``mask`` (s,s) or (N,s,s). With
    ``p.patch_gain`` and ``p.patch_offset`` the patch is first shown under each sign's own lighting (:func:`relight`).

    Where the placed mask is 0 the image is returned unchanged, bit for bit.
    """
    n, _, h, w = images.shape
    if p.patch_gain is not None and p.patch_offset is not None:
        pixels = relight(pixels, p.patch_gain, p.patch_offset)
    pix = pixels.expand(n, *pixels.shape[-3:]) if pixels.ndim == 3 else pixels
    msk = (mask.expand(n, *mask.shape[-2:]) if mask.ndim == 2 else mask).unsqueeze(1).to(images.dtype)
    s = pix.shape[-1]
    if p.placement == "on-object":
        return paste_planned(images, pix, on_object_plan(msk, p.location, h, w))
    # one warp for pixels and mask together (grid_sample treats every channel alike)
    warped = warp_homography(torch.cat([pix, msk], 1), _sticker_matrix(p, s), (h, w), padding="zeros")
    canvas, alpha = warped[:, :-1], warped[:, -1:].clamp(0, 1)
    return images * (1 - alpha) + canvas * alpha


def on_object_plan(
    mask: torch.Tensor, location: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Everything of an on-object paste that does not depend on the patch pixels, for reuse while the places stay.

    ``mask`` (s,s) or (N,1,s,s), ``location`` (N, 2) (top, left). Exact integer placement by gather:
    canvas[n, :, i, j] = pix[n, :, i - top, j - left]. Returns (gather index, alpha, 1 - alpha).
    """
    n, s = len(location), mask.shape[-1]
    msk = mask.expand(n, 1, s, s) if mask.ndim == 2 else mask
    top, left = location[:, 0].round().long().view(n, 1, 1), location[:, 1].round().long().view(n, 1, 1)
    rows = torch.arange(h, device=location.device).view(1, h, 1) - top
    cols = torch.arange(w, device=location.device).view(1, 1, w) - left
    inside = ((rows >= 0) & (rows < s) & (cols >= 0) & (cols < s)).unsqueeze(1)
    flat = (rows.clamp(0, s - 1) * s + cols.clamp(0, s - 1)).view(n, 1, h * w)
    alpha = msk.flatten(2).gather(2, flat).view(n, 1, h, w) * inside
    return flat, alpha, 1 - alpha


def paste_planned(
    images: torch.Tensor, pix: torch.Tensor, plan: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """``paste`` on-object with an :func:`on_object_plan`: ``pix`` (N, C, s, s). Outside the patch alpha is 0,
    so the gathered pixels need no separate inside-mask (same values and gradients, bit for bit)."""
    flat, alpha, keep = plan
    n, ch, h, w = images.shape
    canvas = pix.flatten(2).gather(2, flat.expand(n, ch, h * w)).view(n, ch, h, w)
    return images * keep + canvas * alpha


def _sticker_matrix(p: ViewParams, side: int) -> torch.Tensor:
    """(N, 3, 3) affine maps (last row 0 0 1) from patch pixels to image pixels.

    They rotate and scale about the patch centre.
    """
    c = (side - 1) / 2
    th = torch.deg2rad(p.patch_rotation)
    cos, sin = torch.cos(th) * p.patch_scale, torch.sin(th) * p.patch_scale
    tx = p.location[:, 1] + c - (cos * c - sin * c)
    ty = p.location[:, 0] + c - (sin * c + cos * c)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    return torch.stack([cos, -sin, tx, sin, cos, ty, zero, zero, one], 1).view(-1, 3, 3)


def _blur(x: torch.Tensor, side: int, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur, reflect borders: ``kornia.filters.gaussian_blur2d(x, side, stack([sigma, sigma], 1))``
    up to float rounding, in two grouped convolutions and without kornia's checks (one of them a host sync on
    sigma > 0; the caller clamps sigma). ``x`` (N, C, H, W), ``sigma`` (N,)."""
    n, ch, h, w = x.shape
    r = side // 2
    offsets = torch.arange(side, device=x.device, dtype=x.dtype) - r
    k = torch.exp(-(offsets**2) / (2 * sigma.view(n, 1).to(x.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # (N*C, side)
    y = F.pad(x, (r, r, r, r), mode="reflect").reshape(1, n * ch, h + 2 * r, w + 2 * r)
    y = F.conv2d(F.conv2d(y, k.view(n * ch, 1, 1, side), groups=n * ch), k.view(n * ch, 1, side, 1), groups=n * ch)
    return y.view(n, ch, h, w)


def _adjugate3(m: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) adjugates, the inverse up to a scale factor that a homography ignores (no solver, no host sync):
    row j of adj(m) is the cross product of columns j+1 and j+2 of m."""
    cols = m.transpose(1, 2)  # cols[:, j] = column j
    return torch.linalg.cross(cols[:, [1, 2, 0]], cols[:, [2, 0, 1]], dim=2)


@functools.lru_cache(maxsize=16)
def _pixel_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(3, H*W) homogeneous pixel coordinates (x, y, 1), row-major, made once per size and device."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten(), torch.ones(h * w, dtype=dtype)]).to(device)


@functools.lru_cache(maxsize=16)
def _to_unit(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(3, 3) map from an H x W image's pixel coordinates to grid_sample's [-1, 1] (align_corners=True)."""
    return torch.tensor(
        [[2 / max(w - 1, 1), 0.0, -1.0], [0.0, 2 / max(h - 1, 1), -1.0], [0.0, 0.0, 1.0]], dtype=dtype
    ).to(device)


def warp_homography(
    x: torch.Tensor, m: torch.Tensor, size: tuple[int, int] | None = None, padding: str = "border"
) -> torch.Tensor:
    """``kornia.geometry.transform.warp_perspective(x, m, size, padding_mode=padding, align_corners=True)`` up to
    float rounding: output pixel p samples ``x`` bilinearly at ``m^-1 p``. ``x`` (N, C, h, w), ``m`` (N, 3, 3) from
    source to output pixels, ``size`` the output (H, W) (default: the input's). No solver and no host sync; each
    row's result is the same in any batch (sums, not a batched GEMM)."""
    n, _, h, w = x.shape
    oh, ow = size or (h, w)
    inv = (_to_unit(h, w, x.device, m.dtype).view(1, 3, 3, 1) * _adjugate3(m).unsqueeze(1)).sum(2)  # to_unit @ adj(m)
    q = (inv.unsqueeze(-1) * _pixel_grid(oh, ow, x.device, m.dtype).unsqueeze(0)).sum(2)  # (N, 3, H*W)
    z = q[:, 2:]
    z = torch.where(
        z.abs() > 1e-8, z, torch.ones_like(z)
    )  # a point at infinity (a plane seen edge-on) as kornia treats it
    grid = (q[:, :2] / z).transpose(1, 2).reshape(n, oh, ow, 2)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=True)


def view(images: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """The camera and the light: warp, then brightness/contrast/colour, blur, JPEG-like loss, noise."""
    x = warp_homography(images, camera_matrix(p, images.shape[-1]))
    mean = x.mean((1, 2, 3), keepdim=True)
    light = (p.brightness.view(-1, 1) * p.gain).view(-1, 3, 1, 1)
    x = (((x - mean) * p.contrast.view(-1, 1, 1, 1) + mean) * light).clamp(0, 1)
    x = _blur(x, p.blur_kernel, p.blur.clamp_min(1e-2))
    if p.jpeg is not None:
        x = jpeg_codec_differentiable(x, p.jpeg)
    return (x + p.noise).clamp(0, 1)


def kernel_side(max_sigma: float) -> int:
    """An odd Gaussian kernel side wide enough for ``max_sigma`` (3 sigma each side)."""
    return max(3, 2 * math.ceil(3 * max_sigma) + 1)


def render(images: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """``view(paste(images, patch, p), p)``: what the camera sees of a patched sign."""
    return view(paste(images, pixels, mask, p), p)


def render_clean(images: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """The same viewing conditions without a patch (the clean baseline of a condition)."""
    return view(images, p)
