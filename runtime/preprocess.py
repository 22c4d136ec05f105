"""Pixel-level pre/post-processing of the original pipeline, in numpy (no torch).

The network input is `(u8 / 255 - 0.5) / 0.5` in float32 (ToTensor + Normalize(0.5, 0.5)),
so each pixel is one of the 256 values an 8-bit photo gives.
"""
from __future__ import annotations

import cv2
import numpy as np

HR_MASK_DILATIONS = 3


def to_network_input(image_u8: np.ndarray) -> np.ndarray:
    """HxWxC uint8 -> 1xCxHxW float32 in [-1, 1]."""
    if image_u8.ndim == 2:
        image_u8 = image_u8[:, :, None]
    x = (image_u8.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def from_network_output(x: np.ndarray) -> np.ndarray:
    """1xCxHxW in [-1, 1] -> HxWxC uint8 (clip, no min-max stretch)."""
    x = np.clip((x[0].transpose(1, 2, 0) + 1.0) * 0.5, 0.0, 1.0)
    return np.rint(x * 255.0).astype(np.uint8)


def dilate_mask(mask_u8: np.ndarray, iterations: int = HR_MASK_DILATIONS) -> np.ndarray:
    """3x3 square dilation repeated `iterations` times (HR mode widens scratches)."""
    return cv2.dilate(mask_u8, np.ones((3, 3), np.uint8), iterations=iterations)


def paint_holes(image_u8: np.ndarray, mask_u8: np.ndarray) -> np.ndarray:
    """Holes become white: u8 * (1 - m) + 255 * m with m = mask / 255, truncated to uint8
    exactly as the original does in float64."""
    m = mask_u8.astype(np.float64) / 255.0
    if m.ndim == 2 and image_u8.ndim == 3:
        m = m[:, :, None]
    return (image_u8.astype(np.float64) * (1.0 - m) + m * 255.0).astype(np.uint8)


def mask_to_network_input(mask_u8: np.ndarray) -> np.ndarray:
    """HxW (or HxWx3) uint8 0/255 -> 1x1xHxW float32 0/1 (first channel, as the original)."""
    if mask_u8.ndim == 3:
        mask_u8 = mask_u8[:, :, 0]
    return (mask_u8.astype(np.float32) / np.float32(255.0))[None, None]


def network_input_to_u8(x: np.ndarray) -> np.ndarray:
    """Inverse of `to_network_input` for inputs that came from 8-bit pixels."""
    return np.rint((x[0].transpose(1, 2, 0) * 0.5 + 0.5) * 255.0).astype(np.uint8)
