"""Pictures in and out of the explorer: PNG bytes of a view or a heatmap overlay, and uploaded files read through the
package's one image reader (:mod:`patchscope.data.images`), with a tighter size limit (an upload is held in memory).

>>> import torch
>>> png = to_png(torch.rand(3, 8, 8))
>>> png[:4], read_upload(png).size
(b'\\x89PNG', (8, 8))
"""

from __future__ import annotations

import io
from typing import Any

import torch

from patchscope.data.images import BAD_IMAGE_ERRORS, open_image, reason, to_rgb8
from patchscope.errors import PatchscopeError

#: the most pixels an uploaded picture may hold (checked before it is decoded)
MAX_UPLOAD_PIXELS = 40_000_000
#: the longest side an uploaded picture is kept at (larger ones are shrunk when read)
KEEP_SIDE = 1024
#: the heatmap colours, from cold to hot (RGB in [0, 1])
HEAT_COLOURS = torch.tensor(
    [[0.0, 0.0, 0.2], [0.3, 0.0, 0.6], [0.8, 0.1, 0.4], [1.0, 0.5, 0.0], [1.0, 1.0, 0.3]], dtype=torch.float32
)


def to_png(image: torch.Tensor) -> bytes:
    """PNG bytes of ``image`` (3 or 4, H, W) float in [0, 1] (4 channels: RGBA)."""
    from PIL import Image

    rgb = image.detach().float().cpu().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous()
    out = io.BytesIO()
    Image.fromarray(rgb.numpy(), "RGBA" if image.shape[0] == 4 else "RGB").save(out, format="PNG")
    return out.getvalue()


def heat_overlay(image: torch.Tensor, heat: torch.Tensor, strength: float = 0.6) -> torch.Tensor:
    """``image`` (3, H, W) with the heatmap ``heat`` (H, W) in [0, 1] laid over it in :data:`HEAT_COLOURS`.

    >>> heat_overlay(torch.zeros(3, 4, 4), torch.ones(4, 4)).shape
    torch.Size([3, 4, 4])
    """
    h = heat.float().clamp(0, 1) * (len(HEAT_COLOURS) - 1)
    low = h.floor().long().clamp(max=len(HEAT_COLOURS) - 2)
    frac = (h - low).unsqueeze(0)
    colour = HEAT_COLOURS[low].permute(2, 0, 1) * (1 - frac) + HEAT_COLOURS[low + 1].permute(2, 0, 1) * frac
    return image.float().cpu() * (1 - strength) + colour * strength


def read_upload(data: bytes, alpha: bool = False, what: str = "image") -> Any:
    """An uploaded picture as a PIL image, RGB (``alpha``: RGBA, transparency kept), its longest side at most
    :data:`KEEP_SIDE`. A file that is not a picture, or one over :data:`MAX_UPLOAD_PIXELS`, is refused with one line
    naming ``what`` it was meant to be."""
    from PIL import Image

    try:
        with open_image(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise PatchscopeError(
                    f"the {what} is {w}x{h} pixels, over the explorer's limit of {MAX_UPLOAD_PIXELS:,}: shrink it first"
                )
            keeps_alpha = alpha and ("A" in im.getbands() or "transparency" in im.info)
            picture = im.convert("RGBA") if keeps_alpha else to_rgb8(im)
            picture.thumbnail((KEEP_SIDE, KEEP_SIDE), Image.Resampling.LANCZOS)
            picture.load()
    except Image.UnidentifiedImageError:
        raise PatchscopeError(f"the uploaded {what} is not a picture (PNG, JPEG, ...) that can be read") from None
    except BAD_IMAGE_ERRORS as e:
        raise PatchscopeError(f"the uploaded {what} cannot be read as a picture ({reason(e)})") from None
    return picture.convert("RGBA") if alpha else picture


def pil_to_uint8(picture: Any) -> torch.Tensor:
    """A PIL image as a uint8 tensor ``(C, H, W)`` (C: 3 for RGB, 4 for RGBA)."""
    raw = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8)
    return raw.view(picture.height, picture.width, len(picture.getbands())).permute(2, 0, 1).contiguous()
