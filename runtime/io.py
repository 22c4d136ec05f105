"""Reading photos into HxWx3 uint8 RGB and writing results atomically.

Every failure raises `ImageError` whose message names the file and says what is wrong,
so a batch can report it on one line and go on.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

MAX_PIXELS = 200_000_000  # ~200 MP: bigger than any scan we expect, small enough to refuse bombs


class ImageError(ValueError):
    """An input image cannot be used."""


def _to_rgb_u8(image, path: Path) -> np.ndarray:
    """Flatten PIL modes to 8-bit RGB: alpha dropped, gray replicated, 16-bit scaled, CMYK converted."""
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or data.max() > 255 else 255.0
        gray = np.clip(np.rint(data * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        data = np.asarray(image, dtype=np.float64)
        scale = 255.0 if data.max() <= 1.0 else 1.0
        gray = np.clip(np.rint(data * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode not in ("RGB",):
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def read_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB, EXIF orientation applied. Raises ImageError naming the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{path}: {width}x{height} exceeds the {MAX_PIXELS // 1_000_000} MP limit")
            if width == 0 or height == 0:
                raise ImageError(f"{path}: zero-size image")
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb_u8(image, path)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: refused, too many pixels ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_image(path: str | Path, image_u8: np.ndarray) -> Path:
    """Write atomically (temp file in the same folder, then rename): a crash never leaves
    a half-written file where a finished one is expected."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}.get(
        path.suffix.lower(), "PNG")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(image_u8).save(handle, format=fmt)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
