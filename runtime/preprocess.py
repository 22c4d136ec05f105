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


def dilate_mask(mask_u8: np.ndarray, iterations: int = HR_MASK_DILATIONS) -> np.ndarray:
    """3x3 square dilation repeated `iterations` times (HR mode widens scratches)."""
    return cv2.dilate(mask_u8, np.ones((3, 3), np.uint8), iterations=iterations)


PAINT_BLOCK_PIXELS = 1 << 16  # pixels painted at a time: the float64 formula never spans the photo


def paint_holes(image_u8: np.ndarray, mask_u8: np.ndarray) -> np.ndarray:
    """Holes become white: u8 * (1 - m) + 255 * m with m = mask / 255, truncated to uint8
    exactly as the original does in float64, by row blocks (the whole-frame float64 form took
    ~50 bytes a pixel: 2 GB for a 40 MP scan)."""
    if mask_u8.ndim == 2 and image_u8.ndim == 3:
        mask_u8 = mask_u8[:, :, None]
    out = np.empty(np.broadcast_shapes(image_u8.shape, mask_u8.shape), np.uint8)
    rows = max(1, PAINT_BLOCK_PIXELS // max(1, out.shape[1]))
    for top in range(0, out.shape[0], rows):
        m = mask_u8[top:top + rows].astype(np.float64) / 255.0
        out[top:top + rows] = image_u8[top:top + rows].astype(np.float64) * (1.0 - m) + m * 255.0
    return out


def mask_to_network_input(mask_u8: np.ndarray) -> np.ndarray:
    """HxW (or HxWx3) uint8 0/255 -> 1x1xHxW float32 0/1 (first channel, as the original)."""
    if mask_u8.ndim == 3:
        mask_u8 = mask_u8[:, :, 0]
    return (mask_u8.astype(np.float32) / np.float32(255.0))[None, None]


def network_input_to_u8(x: np.ndarray) -> np.ndarray:
    """Inverse of `to_network_input` for inputs that came from 8-bit pixels."""
    return np.rint((x[0].transpose(1, 2, 0) * 0.5 + 0.5) * 255.0).astype(np.uint8)


def round_to_multiple(value: float, multiple: int) -> int:
    """Python round() (half to even) to a multiple, never below one multiple."""
    return max(multiple, int(round(value / multiple) * multiple))


def resize_to_multiple(image_u8: np.ndarray, multiple: int, method: str) -> np.ndarray:
    """The original's `test_mode Full` (bilinear, multiple of 4) and detection `full_size`
    (bicubic, multiple of 16) resizes, done with PIL as the original does; no-op if aligned."""
    from PIL import Image

    h, w = image_u8.shape[:2]
    th, tw = round_to_multiple(h, multiple), round_to_multiple(w, multiple)
    if (th, tw) == (h, w):
        return image_u8
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[method]
    return np.asarray(Image.fromarray(image_u8).resize((tw, th), resample))


def to_gray(image_u8: np.ndarray) -> np.ndarray:
    """PIL's convert("L") (ITU-R 601 luma, integer rounding), as the detection stage does."""
    from PIL import Image

    return np.asarray(Image.fromarray(image_u8).convert("L"))


# The detection UNet runs outside the tiling budget (~2 KB per detection pixel, measured:
# 256x8000 took 4.1 GB). The original scales the short side to 256 whatever the long side,
# so a 16x4000 strip became 256x64000 (23 GB). The long side is capped instead: photos up
# to 8:1 keep the original's size exactly, longer ones are detected at 2048 px on the long
# side (at most 256x2048 = 0.5 MP, ~1 GB) and the mask is upsampled to the photo as usual.
DETECTION_MAX_LONG_SIDE = 2048
# Longer strips than this are refused before anything big is allocated (one-line reason).
MAX_ASPECT = 64.0


def detection_size(height: int, width: int, short_side: int = 256,
                   max_long_side: int = DETECTION_MAX_LONG_SIDE) -> tuple[int, int]:
    """Size the detection UNet runs at: short side 256 (the original's rule), unless the long
    side would exceed `max_long_side`, then scaled down to it; both sides rounded to 16."""
    if height < width:
        th, tw = short_side, width / height * short_side
    else:
        th, tw = height / width * short_side, short_side
    longest = max(th, tw)
    if longest > max_long_side:
        th, tw = th * max_long_side / longest, tw * max_long_side / longest
    return round_to_multiple(th, 16), round_to_multiple(tw, 16)


def check_aspect(height: int, width: int, name: str = "image", max_aspect: float = MAX_ASPECT) -> None:
    """Refuse extreme strips (1xN, 16x4000, ...) with one line, from the size alone."""
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} {width}x{height} is empty")
    ratio = max(height, width) / min(height, width)
    if ratio > max_aspect:
        raise ValueError(f"{name} {width}x{height} has an aspect ratio of {ratio:.0f}:1; at most "
                         f"{max_aspect:.0f}:1 is supported (crop or pad the photo)")


def output_to_u8(x: np.ndarray, stretch: bool = False) -> np.ndarray:
    """1x3xHxW tanh output -> HxWx3 uint8.

    stretch=True reproduces the original's `save_image(normalize=True)`: the image is
    min-max stretched before quantisation (floor(v*255 + 0.5))."""
    v = (x[0].transpose(1, 2, 0).astype(np.float32) + 1.0) / 2.0
    if stretch:
        lo, hi = float(v.min()), float(v.max())
        v = (v - lo) / max(hi - lo, 1e-5)
    return np.clip(np.floor(v * 255.0 + 0.5), 0, 255).astype(np.uint8)
