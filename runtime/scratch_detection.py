"""Stage 1a (scratch modes): find scratches with the detection UNet.

As the original: gray image, scaled to short side 256 (sides multiples of 16, bilinear),
sigmoid probability, nearest upsampling to the full image, threshold 0.4.

Only the gray float input spans the photo (4 bytes a pixel, built by row blocks); the
threshold is taken at detection size and the 0/255 mask upsampled, which is the same mask
(nearest upsampling copies values, so it commutes with the threshold) without float frames.
"""
from __future__ import annotations

import numpy as np

from .preprocess import detection_size, to_gray, to_network_input
from .resize import resize_bilinear, resize_nearest

THRESHOLD = 0.4
ROWS = 256  # gray rows converted at a time


def gray_network_input(image_u8: np.ndarray) -> np.ndarray:
    """1x1xHxW float32 in [-1, 1] of the photo's gray, as to_network_input(to_gray(image))."""
    gray = to_gray(image_u8)
    out = np.empty((1, 1, *gray.shape), np.float32)
    for top in range(0, gray.shape[0], ROWS):
        out[0, 0, top:top + ROWS] = to_network_input(gray[top:top + ROWS])[0, 0]
    return out


def detect_scratches(backend, image_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (mask HxW uint8 0/255, probability at detection size) for an image whose
    sides are multiples of 16."""
    h, w = image_u8.shape[:2]
    small = resize_bilinear(gray_network_input(image_u8), *detection_size(h, w))
    prob = backend.run("detection", {"gray": small})["prob"]
    hits = (prob[0, 0] >= THRESHOLD).astype(np.uint8) * np.uint8(255)
    return resize_nearest(hits, h, w), prob
