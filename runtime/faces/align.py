"""Stage 2: cut the aligned S x S face crops out of a photo (pure functions).

The crop samples the photo scaled to [0, 1] by multiplication with 1/255, bilinear with zero
fill, clipped by the scikit-image 0.18.3 rule against the whole photo's range, and is saved
as rint(255 * v), exactly as the original's detect_all_dlib scripts write their PNGs.
"""
from __future__ import annotations

import numpy as np

from .warp import bilinear, clip_like_skimage, source_positions

UNIT = 1.0 / 255  # the original scales by multiplication, not division


def sample_crop(photo: np.ndarray, affine: np.ndarray, size: int, scale: float = 1.0,
                bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Bilinear S x S crop (float64) of `photo * scale` through `affine` (crop -> photo),
    clipped against the scaled photo's (min, max) (`bounds`, computed when not given)."""
    if bounds is None:
        bounds = (float(photo.min()) * scale, float(photo.max()) * scale)
    x, y = source_positions(affine, range(size), range(size))
    return clip_like_skimage(bilinear(photo, x, y, scale), *bounds)


def aligned_crops(photo_u8: np.ndarray, affines: np.ndarray, size: int) -> np.ndarray:
    """The stage-2 face crops: N x S x S x 3 uint8, one per affine (N x 3 x 3)."""
    affines = np.asarray(affines, dtype=np.float64).reshape(-1, 3, 3)
    crops = np.empty((len(affines), size, size, photo_u8.shape[2]), np.uint8)
    if len(affines):
        bounds = (float(photo_u8.min()) * UNIT, float(photo_u8.max()) * UNIT)
        for k, affine in enumerate(affines):
            crops[k] = np.rint(255 * sample_crop(photo_u8, affine, size, UNIT, bounds)).astype(np.uint8)
    return crops
