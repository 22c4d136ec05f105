"""Exact histogram matching of the original's warp-back script (not scikit-image's).

Per channel: cdf = cumulative count / total (float64); lut[v] = the smallest u with
cdf_ref[u] >= cdf_src[v]; matched = lut[source]. Integer arithmetic apart from the cdfs,
so a faithful implementation matches bit for bit.
"""
from __future__ import annotations

import numpy as np


def normalized_cdf(values_u8: np.ndarray) -> np.ndarray:
    """Cumulative share of each of the 256 values, float64, ending at exactly 1."""
    counts = np.bincount(values_u8.ravel(), minlength=256)
    cumulative = np.cumsum(counts)
    return cumulative / float(cumulative[-1])


def matching_lut(source_u8: np.ndarray, reference_u8: np.ndarray) -> np.ndarray:
    """256-entry uint8 lookup table taking one channel's histogram onto the reference's."""
    lut = np.searchsorted(normalized_cdf(reference_u8), normalized_cdf(source_u8), side="left")
    return np.minimum(lut, 255).astype(np.uint8)


def match_histograms(source_u8: np.ndarray, reference_u8: np.ndarray) -> np.ndarray:
    """HxWxC uint8 source with each channel's histogram matched to the reference's."""
    out = np.empty_like(source_u8)
    for c in range(source_u8.shape[2]):
        out[..., c] = matching_lut(source_u8[..., c], reference_u8[..., c])[source_u8[..., c]]
    return out
