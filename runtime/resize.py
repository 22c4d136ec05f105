"""PyTorch's `F.interpolate` resizes in numpy, bit-compatible in their index arithmetic.

The masks inside the scratch/HR mapping and the detection probability map are resized
exactly like the original (bilinear align_corners=False without antialiasing; legacy
`nearest` = floor(i * in/out)) so that thresholds fall the same way.
"""
from __future__ import annotations

import numpy as np


def _nearest_index(size_in: int, size_out: int) -> np.ndarray:
    scale = np.float32(size_in / size_out)
    idx = np.floor(np.arange(size_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, size_in - 1)


def resize_nearest(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Legacy nearest on the last two axes."""
    return x[..., _nearest_index(x.shape[-2], height)[:, None], _nearest_index(x.shape[-1], width)[None, :]]


def _linear_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32(size_in / size_out)
    src = (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    i1 = np.minimum(i0 + 1, size_in - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, frac


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear, align_corners=False, no antialias, on the last two axes (float32)."""
    x = x.astype(np.float32, copy=False)
    r0, r1, fy = _linear_weights(x.shape[-2], height)
    c0, c1, fx = _linear_weights(x.shape[-1], width)
    fy = fy[:, None]
    fx = fx[None, :]
    top = x[..., r0[:, None], c0[None, :]] * (1 - fx) + x[..., r0[:, None], c1[None, :]] * fx
    bottom = x[..., r1[:, None], c0[None, :]] * (1 - fx) + x[..., r1[:, None], c1[None, :]] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
