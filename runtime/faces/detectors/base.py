"""What every face detector returns, and the interface the face stage relies on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face: box (left, top, right, bottom) in photo pixels, five points (x, y) in the
    template's order [eye on the image's left, other eye, nose tip, mouth corner on the
    image's left, other mouth corner], a detector score (scales differ per detector), and
    the 68 landmarks where the detector has them."""

    box: tuple[float, float, float, float]
    points5: np.ndarray
    score: float
    landmarks68: np.ndarray | None = field(default=None, compare=False)

    @property
    def eye_distance(self) -> float:
        """Distance between the two eye points: the size measure for skipping tiny faces."""
        return float(np.hypot(*(np.asarray(self.points5[1], float) - np.asarray(self.points5[0], float))))


class Detector(Protocol):
    name: str

    def detect(self, image_u8: np.ndarray) -> list[Detection]:
        """Faces in an HxWx3 uint8 RGB photo, in the detector's own order."""

    def describe(self) -> str:
        """One line: detector, model file, licence note."""


class DetectorUnavailable(RuntimeError):
    """The detector's package or model file is missing; the message says how to get it."""
