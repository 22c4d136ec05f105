"""Stage 4: paste enhanced face crops back into the photo (pure functions, explicit data).

Per face, as the original's align_warp_back scripts do: a colour reference cut from the
photo (bilinear on 0..255, truncated to uint8), a forward mask of the crop pixels that come
from inside the photo, histogram matching of the enhanced crop to the reference, a Keys
cubic warp back, a nearest warp of the mask, erosion + blur into a weight, and a blend on the
unrounded result of the previous face. Work is restricted to the window each face can reach
(`footprint`); outside it the weight and the warped face are exactly 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import sample_crop
from .histogram import match_histograms
from .mask_filters import Window, blend_weight
from .warp import clip_like_skimage, cubic, inside_mask, nearest, source_positions

CHUNK_PIXELS = 1 << 14  # window pixels per strip of the cubic warp


@dataclass
class PastedFace:
    """Intermediates of one face; window arrays cover `window` of the photo."""

    window: Window
    reference: np.ndarray  # SxSx3 uint8 colour reference (truncated)
    forward_mask: np.ndarray  # SxS uint8
    matched: np.ndarray  # SxSx3 uint8
    warped: np.ndarray  # window x 3 float64 (0..255)
    backward_mask: np.ndarray  # window uint8
    eroded: np.ndarray  # window uint8 0/1
    weight: np.ndarray  # window float64 in [0, 1]


def colour_reference(photo_u8: np.ndarray, affine: np.ndarray, size: int,
                     bounds: tuple[float, float] | None = None) -> np.ndarray:
    """The crop stage 4 matches colours to: bilinear on raw 0..255 values, truncated."""
    return sample_crop(photo_u8, affine, size, 1.0, bounds).astype(np.uint8)


def forward_mask(photo_shape: tuple[int, int], affine: np.ndarray, size: int) -> np.ndarray:
    """SxS uint8: 1 where the crop pixel's nearest photo position is inside the photo."""
    x, y = source_positions(affine, range(size), range(size))
    return inside_mask(photo_shape[:2], x, y)


def footprint(affine: np.ndarray, size: int, photo_shape: tuple[int, int]) -> Window:
    """Photo window that holds every pixel the crop can influence (cubic support: crop
    positions in [-2, S + 1)), plus one pixel of safety, clipped to the photo."""
    corners = np.array([[-3.0, -3.0, 1.0], [size + 2.0, -3.0, 1.0], [-3.0, size + 2.0, 1.0],
                        [size + 2.0, size + 2.0, 1.0]])
    mapped = corners @ np.asarray(affine, dtype=np.float64)[:2].T
    h, w = int(photo_shape[0]), int(photo_shape[1])
    left, right = np.floor(mapped[:, 0].min()) - 1, np.ceil(mapped[:, 0].max()) + 2
    top, bottom = np.floor(mapped[:, 1].min()) - 1, np.ceil(mapped[:, 1].max()) + 2
    clip = lambda v, hi: int(min(max(v, 0), hi))  # noqa: E731
    return Window(clip(top, h), clip(bottom, h), clip(left, w), clip(right, w), (h, w))


def warp_back(matched_u8: np.ndarray, inverse: np.ndarray, window: Window) -> np.ndarray:
    """Keys cubic warp of the matched crop into the photo window, clipped by the 0.18.3 rule
    against the crop's own range (float64, 0..255)."""
    out = np.empty((window.bottom - window.top, window.right - window.left, matched_u8.shape[2]), np.float64)
    step = max(1, CHUNK_PIXELS // max(1, out.shape[1]))  # row strips that stay in cache
    for top in range(window.top, window.bottom, step):
        rows = range(top, min(top + step, window.bottom))
        x, y = source_positions(inverse, rows, window.cols)
        out[top - window.top:rows.stop - window.top] = cubic(matched_u8, x, y)
    return clip_like_skimage(out, float(matched_u8.min()), float(matched_u8.max()))


def backward_mask(forward: np.ndarray, inverse: np.ndarray, window: Window) -> np.ndarray:
    """Nearest warp of the forward mask into the photo window (uint8 0/1)."""
    x, y = source_positions(inverse, window.rows, window.cols)
    return nearest(forward, x, y).astype(np.uint8)


def paste_face(canvas: np.ndarray, photo_u8: np.ndarray, enhanced_u8: np.ndarray, affine: np.ndarray,
               window: Window | None = None, bounds: tuple[float, float] | None = None) -> PastedFace:
    """Blend one enhanced crop into `canvas` (HxWx3 float64, 0..255) in place.

    `photo_u8` is the photo stage 4 started from (colour reference; `bounds` its min and
    max); `affine` maps crop -> photo. `window=None` restricts the work to the face's
    footprint (same result)."""
    size = enhanced_u8.shape[0]
    affine = np.asarray(affine, dtype=np.float64)
    inverse = np.linalg.inv(affine)
    window = footprint(affine, size, photo_u8.shape) if window is None else window
    reference = colour_reference(photo_u8, affine, size, bounds)
    forward = forward_mask(photo_u8.shape, affine, size)
    matched = match_histograms(enhanced_u8, reference)
    if window.empty:
        empty = np.zeros((0, 0), np.uint8)
        return PastedFace(window, reference, forward, matched, np.zeros((0, 0, 3)), empty, empty, np.zeros((0, 0)))
    warped = warp_back(matched, inverse, window)
    back = backward_mask(forward, inverse, window)
    eroded, weight = blend_weight(back, window)
    region = canvas[window.slices]
    w = weight[..., None]
    blended = (warped * w + (1 - w) * region) / 255.0
    canvas[window.slices] = np.clip(blended, 0.0, 1.0) * 255.0
    return PastedFace(window, reference, forward, matched, warped, back, eroded, weight)


def paste_faces(photo_u8: np.ndarray, enhanced_u8: np.ndarray, affines: np.ndarray,
                full_frame: bool = False) -> tuple[np.ndarray, list[PastedFace]]:
    """Paste N enhanced crops (N x S x S x 3 uint8) into the photo in order; returns the
    uint8 result (rint, as the original saves it) and each face's intermediates.
    `full_frame=True` computes every intermediate over the whole photo (for checks)."""
    affines = np.asarray(affines, dtype=np.float64).reshape(-1, 3, 3)
    size = enhanced_u8.shape[1] if len(enhanced_u8) else 0
    windows = [Window.full(photo_u8.shape[:2]) if full_frame else footprint(a, size, photo_u8.shape) for a in affines]
    if not windows:
        return photo_u8.copy(), []
    # The float canvas only needs to cover the union of the windows: elsewhere nothing is
    # blended and rint(255 * (v / 255)) == v for every uint8 v.
    union = Window(min(w.top for w in windows), max(w.bottom for w in windows), min(w.left for w in windows),
                   max(w.right for w in windows), windows[0].shape)
    canvas = np.zeros(photo_u8.shape, np.float64)  # lazily touched: only `union` is written
    canvas[union.slices] = photo_u8[union.slices]
    bounds = (float(photo_u8.min()), float(photo_u8.max()))
    faces = [paste_face(canvas, photo_u8, enhanced, affine, window, bounds)
             for enhanced, affine, window in zip(enhanced_u8, affines, windows)]
    output = photo_u8.copy()
    output[union.slices] = to_u8(canvas[union.slices])
    return output, faces


def to_u8(canvas: np.ndarray) -> np.ndarray:
    """rint(255 * (canvas / 255)) as uint8, the original's img_as_ubyte save."""
    return np.clip(np.rint(255.0 * (canvas / 255.0)), 0, 255).astype(np.uint8)
