"""Face geometry of the original: five points from 68 landmarks, the crop template, and the
least-squares similarity that maps crop coordinates to photo coordinates.

Kept bit-faithful to the original's numbers (float32 template, float32 centring and variance
of the template, the rest in float64) because the crops it cuts depend on them.
"""
from __future__ import annotations

import numpy as np

# Reference points of the original (x, y) in a 512 frame: two eyes, nose tip, mouth corners.
REFERENCE_POINTS = (196.0, 226.0, 316.0, 226.0, 256.0, 286.0, 220.0, 360.4, 292.0, 360.4)
FACE_SCALE = 1.3  # the original's window is 30 % wider than the tight template


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """(..., 68, 2) integer landmarks -> (..., 5, 2) int64: eye 36/39, eye 42/45, nose 30,
    mouth 48, mouth 54. Eye centres are truncated toward zero like Python's int()."""
    lm = np.asarray(landmarks68, dtype=np.int64)
    eyes = [np.trunc((lm[..., a, :] + lm[..., b, :]) / 2.0).astype(np.int64) for a, b in ((36, 39), (42, 45))]
    return np.stack(eyes + [lm[..., 30, :], lm[..., 48, :], lm[..., 54, :]], axis=-2)


def template(size: int, face_scale: float = FACE_SCALE) -> np.ndarray:
    """The five template points in crop coordinates of an S x S crop, float32 as the original."""
    std = np.array(REFERENCE_POINTS, np.float32).reshape(5, 2) / np.float32(256.0) - np.float32(1.0)
    return ((std * np.float32(face_scale) + np.float32(1.0)) / np.float32(2.0) * np.float32(size)).astype(np.float32)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama least-squares similarity (rotation, uniform scale, translation, no reflection)
    taking `src` (template, float32) to `dst` (photo points); 3x3 float64 crop -> photo.

    Follows the arithmetic of the scikit-image estimate the original used: the template is
    centred and its variance taken in float32, the reciprocal of that variance in float64.
    Returns a NaN matrix for degenerate points (all equal)."""
    src = np.asarray(src, dtype=np.float32)
    dst = np.asarray(dst)
    if not np.issubdtype(dst.dtype, np.floating):
        dst = dst.astype(np.int64)
    num, dim = src.shape
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0, dtype=np.float64)
    src_c = src - src_mean
    dst_c = dst.astype(np.float64) - dst_mean
    cov = dst_c.T @ src_c.astype(np.float64) / num
    signs = np.ones(dim, dtype=np.float64)
    if np.linalg.det(cov) < 0:
        signs[-1] = -1.0
    out = np.eye(dim + 1, dtype=np.float64)
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        return np.full((dim + 1, dim + 1), np.nan)
    if rank == dim - 1:
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            out[:dim, :dim] = u @ vt
        else:
            flip = signs.copy()
            flip[-1] = -1.0
            out[:dim, :dim] = u @ np.diag(flip) @ vt
    else:
        out[:dim, :dim] = u @ np.diag(signs) @ vt
    variance = np.float64(src_c.var(axis=0).sum())  # float32 sum, reciprocal in float64
    scale = (1.0 / variance) * (s @ signs)
    out[:dim, dim] = dst_mean - scale * (out[:dim, :dim] @ src_mean.astype(np.float64))
    out[:dim, :dim] *= scale
    return out


def crop_to_photo(points5: np.ndarray, size: int, face_scale: float = FACE_SCALE) -> np.ndarray:
    """The affine (3x3, crop -> photo) that aligns one face given its five photo points."""
    return similarity(template(size, face_scale), points5)
