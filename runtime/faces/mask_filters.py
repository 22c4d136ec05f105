"""The blend weight of the warp-back: erosion then Gaussian blur of the face mask.

Equivalent to the original's cv2.erode(9x9, 3 iterations) and cv2.GaussianBlur(25x25,
sigma 0) on the full photo, but computed on a window (`Window`) of it: outside the photo
the erosion counts pixels as inside and the blur mirrors (reflect-101, edge not repeated);
beyond a window edge that is inside the photo the mask is known to be 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ERODE_RADIUS = 12  # 9x9 square three times = 25x25 minimum filter
BLUR_RADIUS = 12  # 25x25 kernel
BLUR_SIGMA = 0.3 * ((25 - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for ksize 25, sigma 0: 4.1


@dataclass(frozen=True)
class Window:
    """Rows [top, bottom) and columns [left, right) of a photo of `shape` (H, W)."""

    top: int
    bottom: int
    left: int
    right: int
    shape: tuple[int, int]

    @classmethod
    def full(cls, shape) -> "Window":
        return cls(0, int(shape[0]), 0, int(shape[1]), (int(shape[0]), int(shape[1])))

    @property
    def rows(self) -> range:
        return range(self.top, self.bottom)

    @property
    def cols(self) -> range:
        return range(self.left, self.right)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def empty(self) -> bool:
        return self.bottom <= self.top or self.right <= self.left


def erode(mask: np.ndarray, window: Window, radius: int = ERODE_RADIUS) -> np.ndarray:
    """(2r+1)^2 minimum filter of a 2-D window; photo borders count as inside (the max)."""
    inside = np.iinfo(mask.dtype).max if np.issubdtype(mask.dtype, np.integer) else np.inf
    pad_rows = (inside if window.top == 0 else 0, inside if window.bottom == window.shape[0] else 0)
    pad_cols = (inside if window.left == 0 else 0, inside if window.right == window.shape[1] else 0)
    out = np.pad(mask, ((radius, radius), (0, 0)), constant_values=(pad_rows, (0, 0)))
    out = sliding_window_view(out, 2 * radius + 1, axis=0).min(axis=-1)
    out = np.pad(out, ((0, 0), (radius, radius)), constant_values=((0, 0), pad_cols))
    return sliding_window_view(out, 2 * radius + 1, axis=1).min(axis=-1)


def gaussian_kernel(radius: int = BLUR_RADIUS, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """exp(-i^2 / (2 sigma^2)) for i = -r..r, normalised to sum 1 (float64)."""
    i = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-(i * i) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def _mirrored(values: np.ndarray, axis: int, start: int, total: int, radius: int) -> np.ndarray:
    """`values` (a window of a photo axis of length `total` from `start`) extended by
    `radius` on each side: reflect-101 at the photo's ends, zeros beyond window edges."""
    n = values.shape[axis]
    photo_index = np.arange(start - radius, start + n + radius)
    photo_index = np.where(photo_index < 0, -photo_index, photo_index)
    photo_index = np.where(photo_index >= total, 2 * (total - 1) - photo_index, photo_index)
    local = photo_index - start
    known = (local >= 0) & (local < n)
    taken = np.take(values, np.clip(local, 0, n - 1), axis=axis)
    shape = [1, 1]
    shape[axis] = -1
    return np.where(known.reshape(shape), taken, 0.0)


def blur(mask: np.ndarray, window: Window, radius: int = BLUR_RADIUS, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Separable Gaussian (along rows, then columns) of a 2-D float64 window."""
    kernel = gaussian_kernel(radius, sigma)
    out = mask.astype(np.float64)
    for axis, start, total in ((1, window.left, window.shape[1]), (0, window.top, window.shape[0])):
        padded = _mirrored(out, axis, start, total, radius)
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, weight in enumerate(kernel):
            acc += weight * (padded[:, k:k + n] if axis == 1 else padded[k:k + n, :])
        out = acc
    return out


def blend_weight(backward_mask: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """(eroded 0/1 uint8, weight in [0, 1] float64) of a 0/1 backward mask window."""
    eroded = erode(backward_mask.astype(np.uint8) * 255, window)
    weight = blur(eroded.astype(np.float64), window) / 255.0
    return (eroded // 255).astype(np.uint8), weight
