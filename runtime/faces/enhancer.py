"""The face stage on one restored photo: detect, align, enhance, paste back.

Detection runs once: the original detects again before pasting back, on the same photo with
the same detector, which gives the same faces in the same order.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import opencv_path
from .align import aligned_crops
from .detectors.base import Detection
from .generator import DEFAULT_BATCH, FaceGenerator
from .geometry import crop_to_photo
from .paste import paste_faces

# Faces whose eyes are closer than this (photo pixels) are left alone. The crop window is
# about 3.3x the eye distance wide and the paste-back erodes 12 px from its edge, then blurs
# 12 px: at 16 px the blend weight reaches 1 on a ~24 px core (eyes to mouth); at 12 px it
# never exceeds 0.71; at 8 px it is 0 everywhere (measured; docs/faces.md).
MIN_EYE_DISTANCE = 16.0
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class FaceRecord:
    """One detected face and what the stage did with it."""

    detection: Detection
    affine: np.ndarray | None = None  # 3x3 crop -> photo
    crop: np.ndarray | None = None  # S x S x 3 uint8 (stage 2)
    enhanced: np.ndarray | None = None  # S x S x 3 uint8 (stage 3)
    skipped: str | None = None  # why the face was left alone


@dataclass
class FaceStageResult:
    image: np.ndarray  # H x W x 3 uint8
    faces: list[FaceRecord] = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # seconds per step

    @property
    def enhanced_faces(self) -> list[FaceRecord]:
        return [f for f in self.faces if f.skipped is None]


def is_grayscale(image_u8: np.ndarray) -> bool:
    return image_u8.ndim == 2 or bool((image_u8[..., 0] == image_u8[..., 1]).all()
                                      and (image_u8[..., 1] == image_u8[..., 2]).all())


def to_gray(faces_u8: np.ndarray) -> np.ndarray:
    """Luma (ITU-R 601), replicated to three channels."""
    luma = np.rint(faces_u8.astype(np.float32) @ LUMA).clip(0, 255).astype(np.uint8)
    return np.repeat(luma[..., None], 3, axis=-1)


class FaceEnhancer:
    """Stages 2-4 with a detector and the face generator on a backend.

    sampler: "exact" (default; the original's arithmetic, see paste.py) or "opencv"
    (about 8x faster paste-back, not faithful: see opencv_path.py for the measured gap).

    Stateless between photos apart from the detector and backend it holds (both are
    thread-safe), so one instance may serve concurrent calls."""

    def __init__(self, backend, detector, crop_size: int = 256, min_eye_distance: float = MIN_EYE_DISTANCE,
                 batch_size: int = DEFAULT_BATCH, sampler: str = "exact"):
        if sampler not in ("exact", "opencv"):
            raise ValueError(f"sampler must be 'exact' (faithful to the original) or 'opencv' (faster), not {sampler!r}")
        self.sampler = sampler
        self.detector = detector
        self.generator = FaceGenerator(backend, crop_size, batch_size)
        self.crop_size = crop_size
        self.min_eye_distance = min_eye_distance

    def enhance(self, restored_u8: np.ndarray, grayscale: bool | None = None,
                detections: list[Detection] | None = None) -> FaceStageResult:
        """Enhance every face of an H x W x 3 uint8 photo (the globally restored one).

        grayscale: keep faces gray (the generator may add colour); default: whether the
        photo's channels are all equal. detections: skip the detector and use these.
        A photo without (usable) faces comes back unchanged, as the same array."""
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = now - clock
            clock = now

        if detections is None:
            detections = self.detector.detect(restored_u8)
        lap("detect")
        records = [self._prepare(d) for d in detections]
        usable = [r for r in records if r.skipped is None]
        if not usable:
            return FaceStageResult(restored_u8, records, timings)
        affines = np.stack([r.affine for r in usable])
        crops = (aligned_crops if self.sampler == "exact" else opencv_path.aligned_crops_cv2)(
            restored_u8, affines, self.crop_size)
        lap("align")
        enhanced = self.generator(crops)
        if is_grayscale(restored_u8) if grayscale is None else grayscale:
            enhanced = to_gray(enhanced)
        lap("enhance")
        if self.sampler == "exact":
            image, _ = paste_faces(restored_u8, enhanced, affines)
        else:
            image = opencv_path.paste_faces_cv2(restored_u8, enhanced, affines)
        lap("paste")
        for record, crop, face in zip(usable, crops, enhanced):
            record.crop, record.enhanced = crop, face
        return FaceStageResult(image, records, timings)

    def _prepare(self, detection: Detection) -> FaceRecord:
        record = FaceRecord(detection)
        if detection.eye_distance < self.min_eye_distance:
            record.skipped = f"too small (eyes {detection.eye_distance:.1f} px apart, minimum {self.min_eye_distance:g})"
            return record
        affine = crop_to_photo(detection.points5, self.crop_size)
        if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:2, :2])) < 1e-12:
            record.skipped = "degenerate landmarks"
            return record
        record.affine = affine
        return record
