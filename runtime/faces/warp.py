"""Inverse-mapping image samplers with the exact arithmetic of the scikit-image release the
original pinned (0.18.3): bilinear and Keys cubic (a = -0.5) with zero fill, nearest with
round-half-away-from-zero, and its clipping rule after interpolation.

OpenCV's warpAffine samplers (fixed-point positions, a = -0.75 cubic) miss the reference
tolerances, so these are written out in float64 numpy. Every function samples only the
destination window it is given, so callers can restrict work to where a face lands.
"""
from __future__ import annotations

import numpy as np


def source_positions(matrix: np.ndarray, rows: range, cols: range) -> tuple[np.ndarray, np.ndarray]:
    """(x_src, y_src) for destination pixels (x = col, y = row) of the window, float64,
    evaluated as M00*x + M01*y + M02 (same order as the original's C code)."""
    m = np.asarray(matrix, dtype=np.float64)
    y = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None]
    x = np.arange(cols.start, cols.stop, dtype=np.float64)[None, :]
    return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]


def _gather(image: np.ndarray, r: np.ndarray, c: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """float64 image[r, c] * scale (..., C), 0 wherever (r, c) lies outside the image.
    Gathering from uint8 and scaling afterwards equals scaling the whole image first, and
    avoids a float copy of a large photo."""
    h, w = image.shape[:2]
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    values = image[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)].astype(np.float64)
    if scale != 1.0:
        values *= scale
    return np.where(inside[..., None], values, 0.0)


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Bilinear samples of an HxWxC image (times `scale`) at (x, y), float64, zero outside."""
    r0, c0 = np.floor(y), np.floor(x)
    r1, c1 = np.ceil(y), np.ceil(x)
    dr, dc = (y - r0)[..., None], (x - c0)[..., None]
    r0, r1, c0, c1 = (a.astype(np.int64) for a in (r0, r1, c0, c1))
    top = (1 - dc) * _gather(image, r0, c0, scale) + dc * _gather(image, r0, c1, scale)
    bottom = (1 - dc) * _gather(image, r1, c0, scale) + dc * _gather(image, r1, c1, scale)
    return (1 - dr) * top + dr * bottom


def zero_bordered(image: np.ndarray) -> np.ndarray:
    """A float64 copy of a small HxW(xC) source with a one-pixel zero frame, for `_take`."""
    image = image[..., None] if image.ndim == 2 else image
    out = np.zeros((image.shape[0] + 2, image.shape[1] + 2, image.shape[2]), np.float64)
    out[1:-1, 1:-1] = image
    return out


def _take(bordered: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """bordered[r + 1, c + 1] for any integer r, c: positions outside the source are clipped
    onto the zero frame, so they read exactly 0 (same values as `_gather`, fewer passes)."""
    h2, w2, channels = bordered.shape
    index = np.clip(rows + 1, 0, h2 - 1) * w2 + np.clip(cols + 1, 0, w2 - 1)
    return np.take(bordered.reshape(-1, channels), index, axis=0)


def _keys(t: np.ndarray, f0, f1, f2, f3) -> np.ndarray:
    """Catmull-Rom (a = -0.5) through f0..f3 at fraction t, in the original's operation order."""
    # f1 + 0.5 t (f2 - f0 + t (2 f0 - 5 f1 + 4 f2 - f3 + t (3 (f1 - f2) + f3 - f0))), written
    # with in-place steps in the same order (every rounding identical, fewer temporaries).
    inner = f1 - f2
    inner *= 3.0
    inner += f3
    inner -= f0
    inner *= t
    middle = 2.0 * f0
    middle -= 5.0 * f1
    middle += 4.0 * f2
    middle -= f3
    middle += inner
    middle *= t
    outer = f2 - f0
    outer += middle
    outer *= 0.5 * t
    outer += f1
    return outer


def cubic(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Keys cubic samples of a small HxWxC source (4x4 neighbours, along x first, then y),
    zero outside; float64."""
    bordered = zero_bordered(image)
    r0, c0 = np.floor(y), np.floor(x)
    tr, tc = (y - r0)[..., None], (x - c0)[..., None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    rows = []
    for dr in (-1, 0, 1, 2):
        taps = [_take(bordered, r0 + dr, c0 + dc) for dc in (-1, 0, 1, 2)]
        rows.append(_keys(tc, *taps))
    return _keys(tr, *rows)


def round_half_away(v: np.ndarray) -> np.ndarray:
    """C's (long)(v + 0.5) for v > 0, (long)(v - 0.5) otherwise."""
    return np.where(v > 0, np.trunc(v + 0.5), np.trunc(v - 0.5)).astype(np.int64)


def nearest(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Nearest samples of a small HxW (or HxWxC) source, zero outside; float64."""
    values = _take(zero_bordered(image), round_half_away(y), round_half_away(x))
    return values[..., 0] if image.ndim == 2 else values


def inside_mask(shape: tuple[int, int], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """uint8 1 where the nearest-rounded position lies inside an image of `shape`."""
    r, c = round_half_away(y), round_half_away(x)
    return ((r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])).astype(np.uint8)


def clip_like_skimage(values: np.ndarray, low: float, high: float, fill: float = 0.0) -> np.ndarray:
    """scikit-image 0.18.3's clip after interpolation, in place: if the fill value lies in
    [low, high] (the input's min and max) clip to it; otherwise keep outputs exactly equal
    to the fill and clip the rest (edge pixels rise to the minimum instead of fading)."""
    if low <= fill <= high:
        return np.clip(values, low, high, out=values)
    keep = values == fill
    np.clip(values, low, high, out=values)
    values[keep] = fill
    return values
