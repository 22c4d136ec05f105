"""Decoding uploaded photos safely, in memory, and encoding results.

Limits are checked in the cheapest order: the byte size first (before the body is read
completely, by the caller), then the pixel count from the *header* (PIL's `open` reads
only the header), and only then `load()` decodes the pixels. So a decompression bomb (a
small file declaring a huge image) is refused before any pixel buffer exists. Nothing
touches the disk.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


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


def decode_image(data: bytes, limits: Limits, name: str = "upload") -> np.ndarray:
    """HxWx3 uint8 RGB with EXIF orientation applied; raises RequestImageError (413 for
    limits, 415 for a format PIL cannot read, 422 for a corrupt or unusable image)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..io import _to_rgb_u8

    if not data:
        raise RequestImageError(f"{name}: empty upload", 422)
    if len(data) > limits.max_bytes:
        raise RequestImageError(f"{name}: {len(data)} bytes exceeds the {limits.max_bytes} byte limit", 413)
    try:
        image = Image.open(io.BytesIO(data))  # header only, no pixels decoded yet
    except UnidentifiedImageError:
        raise RequestImageError(f"{name}: not an image format this service reads (PNG, JPEG, TIFF, BMP, WebP)",
                                415) from None
    except Image.DecompressionBombError as err:  # PIL's own guard, far above our limit
        raise RequestImageError(f"{name}: refused before decoding, the header declares too many pixels ({err})",
                                413) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise RequestImageError(f"{name}: corrupt image header ({err})", 422) from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise RequestImageError(f"{name}: zero-size image", 422)
        if width * height > limits.max_pixels or max(width, height) > limits.max_side:
            raise RequestImageError(
                f"{name}: {width}x{height} ({width * height / 1e6:.1f} MP) exceeds the limit of "
                f"{limits.max_pixels / 1e6:.1f} MP / {limits.max_side} px per side; refused before decoding", 413)
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb_u8(image, name)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise RequestImageError(f"{name}: corrupt or truncated image ({err})", 422) from None


def encode_png(image_u8: np.ndarray, compress_level: int = 3) -> bytes:
    """PNG bytes in memory (level 3: ~4x faster than PIL's default 6, a little larger)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image_u8).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
