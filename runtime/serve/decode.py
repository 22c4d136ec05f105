"""Decoding uploaded photos safely, in memory, and encoding results.

Limits are checked in the cheapest order: the byte size first (before the body is read
completely, by the caller), then the format and the pixel count from the *header* (PIL's
`open` reads only the header), then the caller's admission check (`admit`: queue space, the
mode's aspect limit), and only then `load()` decodes the pixels. So a decompression bomb (a
small file declaring a huge image) is refused before any pixel buffer exists. Nothing
touches the disk.

Only PNG, JPEG, TIFF, BMP and WebP are opened: PIL knows many more formats, some handled by
outside programs (EPS goes to Ghostscript), and none of them is a photo a kiosk needs.
16-bit images are scaled with integer arithmetic (no float64 full-frame copies).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")  # what Image.open may try; nothing else is parsed


class RequestImageError(ValueError):
    """An uploaded image cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024  # request body
    max_pixels: int = 40_000_000  # width x height as declared by the header
    max_side: int = 20_000  # either side


def _to_rgb_u8(image) -> np.ndarray:
    """8-bit RGB; 16-bit, 32-bit integer and float gray scaled by the CLI's own integer
    row-block path (runtime.io.gray_to_u8), so both read a photo the same way."""
    from ..io import gray_to_u8, rgb_array

    gray = gray_to_u8(image)
    if gray is not None:
        return np.repeat(gray[:, :, None], 3, axis=2)
    return rgb_array(image if image.mode in ("L", "RGB") else image.convert("RGB"))


def decode_image(data: bytes, limits: Limits, name: str = "upload",
                 admit: Callable[[int, int], None] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB with EXIF orientation applied; raises RequestImageError (413 for
    limits, 415 for a format not on the list, 422 for a corrupt or unusable image).
    `admit(width, height)` runs after the header is parsed and before any pixel is decoded;
    it may raise to refuse the photo."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    # our own pixel limit applies (below, from the header); PIL's warning text would only be noise
    # (a process-wide filter: catch_warnings is not thread-safe)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    if not data:
        raise RequestImageError(f"{name}: empty upload", 422)
    if len(data) > limits.max_bytes:
        raise RequestImageError(f"{name}: {len(data)} bytes exceeds the {limits.max_bytes} byte limit", 413)
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # header only, no pixels decoded yet
    except UnidentifiedImageError:
        raise RequestImageError(f"{name}: not an image format this service reads (PNG, JPEG, TIFF, BMP, WebP)",
                                415) from None
    except Image.DecompressionBombError:  # PIL's own guard, far above our limit
        raise RequestImageError(f"{name}: refused before decoding, the header declares too many pixels",
                                413) from None
    except (OSError, SyntaxError, ValueError):
        raise RequestImageError(f"{name}: corrupt image header", 422) from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise RequestImageError(f"{name}: zero-size image", 422)
        if width * height > limits.max_pixels or max(width, height) > limits.max_side:
            raise RequestImageError(
                f"{name}: {width}x{height} ({width * height / 1e6:.1f} MP) exceeds the limit of "
                f"{limits.max_pixels / 1e6:.1f} MP / {limits.max_side} px per side; refused before decoding", 413)
        if admit is not None:
            admit(width, height)
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb_u8(image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise RequestImageError(f"{name}: corrupt or truncated image", 422) from None


def encode_png(image_u8: np.ndarray, compress_level: int = 3) -> bytes:
    """PNG bytes in memory (level 3: ~4x faster than PIL's default 6, a little larger)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image_u8).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
