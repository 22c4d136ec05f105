"""Procedural 'clean photos' for when no folder of real images is given.

A scene is a sky/ground gradient, soft textured regions (fractal noise), a few shaded
shapes (ellipses, rectangles, polygons) and sharp edges, so the networks see the mix of
flat areas, texture and edges that photos have. Deterministic given the generator.
"""
from __future__ import annotations

import cv2
import numpy as np

from .degrade import smooth_noise


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    hsv = np.stack([rng.uniform(0, 180, count), rng.uniform(30, 200, count), rng.uniform(60, 240, count)], 1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    return rgb.astype(np.float32) / 255


def procedural_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One HxWx3 uint8 scene."""
    colours = _palette(rng, 8)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.3, 0.7)
    top, bottom = colours[0], colours[1]
    image = np.where(yy < horizon, top * (1 - 0.5 * yy), bottom * (0.6 + 0.4 * yy))
    image = np.broadcast_to(image, (height, width, 3)).copy()
    texture = smooth_noise(rng, height, width, scale=rng.uniform(6, 40), octaves=5)
    image *= (1 + 0.25 * texture)[:, :, None]
    for _ in range(int(rng.integers(3, 9))):
        layer = np.zeros((height, width), np.uint8)
        kind = rng.integers(0, 3)
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.uniform(0.05, 0.35) * min(height, width)) + 2
        if kind == 0:
            cv2.ellipse(layer, (cx, cy), (size, int(size * rng.uniform(0.4, 1.6))), float(rng.uniform(0, 180)),
                        0, 360, 255, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(layer, (cx - size, cy - size // 2), (cx + size, cy + size), 255, -1, cv2.LINE_AA)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            radii = size * rng.uniform(0.5, 1.0, angles.size)
            points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
            cv2.fillPoly(layer, [points], 255, cv2.LINE_AA)
        alpha = cv2.GaussianBlur(layer, (0, 0), rng.uniform(0.3, 3.0)).astype(np.float32)[:, :, None] / 255
        colour = colours[int(rng.integers(2, len(colours)))]
        shade = 0.75 + 0.25 * smooth_noise(rng, height, width, scale=rng.uniform(10, 60), octaves=2)[:, :, None]
        image = image * (1 - alpha) + colour * shade * alpha
    for _ in range(int(rng.integers(0, 6))):  # thin sharp structures: branches, wires, frames
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        tone = tuple(float(c) for c in colours[int(rng.integers(0, len(colours)))])
        canvas = np.ascontiguousarray(image)
        cv2.line(canvas, p0, p1, tone, int(rng.integers(1, 3)), cv2.LINE_AA)
        image = canvas
    return np.clip(np.floor(image * 255 + 0.5), 0, 255).astype(np.uint8)
