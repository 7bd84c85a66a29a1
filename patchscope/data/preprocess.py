"""`Preprocess`: how one image becomes a model's input: resize, then centre crop, as uint8 ``(3, S, S)``.

Normalisation (mean, std) stays in the model wrapper; this is only the geometry a model card asks for.
torchvision's and timm's ImageNet models resize the short side (e.g. to 232 or 256) and centre-crop
224; the zoo's 32-px models resize the whole image to a square.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from patchscope.errors import PatchscopeError
from patchscope.validate import MAX_IMAGE_SIZE

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
#: the largest side a model card may resize images to before its crop
MAX_RESIZE = 4 * MAX_IMAGE_SIZE


def _is_size(value: Any) -> bool:
    """A whole number of pixels in 1..MAX_RESIZE (not a bool, NaN or text)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RESIZE


@dataclass(frozen=True)
class Preprocess:
    """Resize to ``resize`` (an int: the short side, keeping aspect; a pair ``(h, w)``: exactly), centre-crop ``crop``.

    Args:
        resize: short-side length, or ``(height, width)`` for a plain resize.
        crop: side of the square centre crop, the model's input size.
        interpolation: ``nearest``, ``bilinear`` or ``bicubic`` (antialiased when shrinking).

    >>> from PIL import Image
    >>> p = Preprocess(resize=36, crop=32)
    >>> p(Image.new("RGB", (80, 40))).shape
    torch.Size([3, 32, 32])
    >>> Preprocess.square(32)(torch.zeros(3, 50, 20, dtype=torch.uint8)).shape
    torch.Size([3, 32, 32])
    """

    resize: int | tuple[int, int]
    crop: int
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise PatchscopeError(
                f"preprocess interpolation {self.interpolation!r}: use one of {', '.join(INTERPOLATIONS)}"
            )
        sizes = (self.resize,) if isinstance(self.resize, int) else tuple(self.resize)
        if self.crop < 1 or not all(isinstance(s, int) and s >= self.crop for s in sizes):
            raise PatchscopeError(f"preprocess: resize {self.resize} must be integers >= the crop {self.crop}")

    @classmethod
    def square(cls, size: int, interpolation: str = "bilinear") -> Preprocess:
        """The whole image resized to ``size`` x ``size`` (the zoo's 32-px models), no crop."""
        return cls((int(size), int(size)), int(size), interpolation)

    @classmethod
    def from_card(cls, card: dict[str, Any], input_size: int) -> Preprocess:
        """From a model card's ``preprocess`` entry (``resize``, ``crop``, ``interpolation``), else a square resize."""
        spec = card.get("preprocess")
        if not spec:
            return cls.square(input_size)
        if not isinstance(spec, dict) or "resize" not in spec:
            raise PatchscopeError(
                f"model card's preprocess must be an object with resize (and crop, interpolation), got {spec!r}"
            )
        resize, crop = spec["resize"], spec.get("crop", input_size)
        pair = isinstance(resize, list) and len(resize) == 2 and all(_is_size(r) for r in resize)
        if not (_is_size(resize) or pair):
            raise PatchscopeError(
                f"model card's preprocess resize must be a side in 1..{MAX_RESIZE} or a [height, width] pair of "
                f"them, got {resize!r}"
            )
        if not _is_size(crop) or crop > MAX_IMAGE_SIZE:
            raise PatchscopeError(f"model card's preprocess crop must be a side in 1..{MAX_IMAGE_SIZE}, got {crop!r}")
        interpolation = spec.get("interpolation", "bilinear")
        if not isinstance(interpolation, str):
            raise PatchscopeError(f"model card's preprocess interpolation must be a name, got {interpolation!r}")
        return cls(int(resize) if not pair else (int(resize[0]), int(resize[1])), int(crop), interpolation)

    def as_dict(self) -> dict[str, Any]:
        """The card's ``preprocess`` entry, JSON-ready."""
        resize = self.resize if isinstance(self.resize, int) else list(self.resize)
        return {"resize": resize, "crop": self.crop, "interpolation": self.interpolation}

    def __call__(self, image: Any) -> torch.Tensor:
        """A PIL image (any mode) or a uint8 ``(3, H, W)`` tensor -> uint8 ``(3, crop, crop)``."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        mode = InterpolationMode(self.interpolation)
        size = [self.resize] if isinstance(self.resize, int) else list(self.resize)
        if isinstance(image, torch.Tensor):
            out = TF.center_crop(TF.resize(image, size, interpolation=mode, antialias=True), [self.crop, self.crop])
            return out.contiguous()
        from patchscope.data.images import to_rgb8

        rgb = to_rgb8(image)
        out = TF.center_crop(TF.resize(rgb, size, interpolation=mode, antialias=True), [self.crop, self.crop])
        return TF.pil_to_tensor(out)
