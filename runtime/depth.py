"""Keeping 16 bits per channel where the networks left a pixel alone (`--keep-depth`).

The networks work on 8-bit sRGB. A pixel counts as unchanged when every channel of the
restored 8-bit pixel lies within `threshold` levels of the 8-bit pixel the networks were
given (round(v16 / 257) for a 16-bit input without colour conversion). Unchanged pixels get
the input's 16-bit values back; changed ones the restoration scaled by 257 (0..255 ->
0..65535). Both live in the output's colour space, which is the input's.
"""
from __future__ import annotations

import numpy as np


def unchanged_mask(restored_u8: np.ndarray, network_u8: np.ndarray, threshold: int) -> np.ndarray:
    """HxW bool: every channel within `threshold` 8-bit levels."""
    if restored_u8.shape != network_u8.shape:
        raise ValueError(f"keep-depth needs the output at the input's size ({restored_u8.shape[1]}x"
                         f"{restored_u8.shape[0]} vs {network_u8.shape[1]}x{network_u8.shape[0]}); "
                         "do not combine it with --network-size")
    diff = np.abs(restored_u8.astype(np.int16) - network_u8.astype(np.int16))
    return np.all(diff <= threshold, axis=2)


def merge_depth(restored_u8: np.ndarray, network_u8: np.ndarray, output_u8: np.ndarray, high_u16: np.ndarray,
                threshold: int) -> tuple[np.ndarray, float]:
    """(uint16 image, fraction of pixels that kept their 16-bit values). `output_u8` is the
    restoration in the output colour space (HxWx3, or HxW for a gray profile), `high_u16`
    the input's 16-bit values in the same space and layout."""
    keep = unchanged_mask(restored_u8, network_u8, threshold)
    merged = output_u8.astype(np.uint16) * np.uint16(257)
    merged[keep] = high_u16[keep]
    return merged, float(keep.mean())
