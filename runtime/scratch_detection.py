"""Stage 1a (scratch modes): find scratches with the detection UNet.

As the original: gray image, scaled to short side 256 (sides multiples of 16, bilinear),
sigmoid probability, nearest upsampling to the full image, threshold 0.4.
"""
from __future__ import annotations

import numpy as np

from .preprocess import detection_size, to_gray, to_network_input
from .resize import resize_bilinear, resize_nearest

THRESHOLD = 0.4


def detect_scratches(backend, image_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (mask HxW uint8 0/255, probability at detection size) for an image whose
    sides are multiples of 16."""
    h, w = image_u8.shape[:2]
    gray = to_network_input(to_gray(image_u8))
    small = resize_bilinear(gray, *detection_size(h, w))
    prob = backend.run("detection", {"gray": small})["prob"]
    full = resize_nearest(prob, h, w)[0, 0]
    return (full >= THRESHOLD).astype(np.uint8) * 255, prob
