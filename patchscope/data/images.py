"""The one place image files are read: every mode and bit depth to 8-bit RGB, a size limit, quiet decoders.

Pillow reads a 16-bit greyscale PNG as 32-bit integers (mode ``I`` or ``I;16``) and a float TIFF as mode ``F``;
``convert("RGB")`` clips those to 255 (pure white), so :func:`to_rgb8` scales them first. Images over
:data:`MAX_PIXELS` are refused before they are decoded, and Pillow's warnings (a large image, a TIFF's odd
tags) never reach stderr.

>>> import tempfile, numpy as np
>>> from PIL import Image
>>> path = tempfile.mkdtemp() + "/grey16.png"
>>> Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(path)
>>> with open_image(path) as im:
...     to_rgb8(im).getpixel((0, 0))
(128, 128, 128)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from patchscope.errors import PatchscopeError

#: the most pixels an image file may hold (Pillow's own refusal threshold: twice its warning threshold)
MAX_PIXELS = 2 * 89_478_485
#: the errors a damaged, truncated or unknown image file raises while it is opened or decoded
BAD_IMAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, EOFError, MemoryError)


class ImageTooLarge(ValueError):
    """An image over :data:`MAX_PIXELS`: refused before it is decoded."""


def shown(path: str | os.PathLike[str]) -> str:
    """A path as one line of text: control characters (a newline in a file name) written as escapes.

    >>> shown("a\\nb.png")
    'a\\\\nb.png'
    """
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)[1:-1]


@contextlib.contextmanager
def open_image(path: str | os.PathLike[str] | IO[bytes]) -> Iterator[Any]:
    """Open an image file lazily (Pillow), its warnings silenced; raises :class:`ImageTooLarge` over the limit.

    ``path`` may also be a binary file object (an upload held in memory, ``io.BytesIO``)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's notes (a large image, a TIFF's tags) would break the one line
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:
            raise ImageTooLarge(f"over the limit of {MAX_PIXELS:,} pixels") from None
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageTooLarge(f"{w}x{h} pixels, over the limit of {MAX_PIXELS:,}")
            yield im


def to_rgb8(image: Any) -> Any:
    """A PIL image of any mode and depth as 8-bit RGB: 16- and 32-bit integers scaled from 0..65535, floats from
    0..1 (else clipped to 0..255), palette, alpha, CMYK and 1-bit images converted as Pillow does."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if image.mode.startswith("I") or image.mode == "F":
            a = np.asarray(image, dtype=np.float64)
            if image.mode == "F":
                scale = 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else 1.0
            else:
                scale = 1 / 257  # 16-bit range onto 8 bits: 65535 -> 255
            grey = np.nan_to_num(a * scale, nan=0.0).round().clip(0, 255).astype(np.uint8)
            return Image.fromarray(grey, "L").convert("RGB")
        if image.mode in ("LAB", "HSV"):
            raise ValueError(f"cannot read {image.mode} images; save the image as RGB")
        return image.convert("RGB")


def read_rgb8(path: str | os.PathLike[str] | IO[bytes]) -> Any:
    """The image file at ``path`` (or a binary file object) as an 8-bit RGB PIL image (fully decoded, the file
    closed)."""
    with open_image(path) as im:
        rgb = to_rgb8(im)
        rgb.load()
        return rgb


def check_readable(path: str | os.PathLike[str], name: str, params: tuple[str, ...] = ()) -> Any:
    """:func:`read_rgb8`, a file that cannot be read as one line naming ``name`` (the option it came from)."""
    try:
        return read_rgb8(path)
    except FileNotFoundError:
        raise PatchscopeError(f"{name} {shown(path)}: no such image file", params=params) from None
    except BAD_IMAGE_ERRORS as e:
        raise PatchscopeError(f"{name} {shown(path)}: cannot read the image ({reason(e)})", params=params) from None


def reason(error: BaseException) -> str:
    """An image error as a short one-line reason: ``UnidentifiedImageError: cannot identify image file``."""
    text = shown(str(error).splitlines()[0][:100]) if str(error) else ""
    return f"{error.__class__.__name__}{': ' + text if text else ''}"
