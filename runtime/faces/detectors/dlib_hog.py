"""dlib's HOG detector + 68-point shape predictor, reduced to five points exactly as the
original (`detect_all_dlib.py`): upsample 0, threshold 0, every face in dlib's order, eye
centres truncated like Python's int().

dlib comes from the `dlib-bin` wheel; the predictor file from `model_files.dlib_predictor`.
"""
from __future__ import annotations

import threading

import numpy as np

from ..geometry import five_points
from .base import Detection, DetectorUnavailable


class DlibDetector:
    name = "dlib"

    def __init__(self, predictor_path, upsample: int = 0, threshold: float = 0.0):
        try:
            import dlib
        except ImportError:
            raise DetectorUnavailable("dlib is not installed: pip install 'trt-restore[face]' (dlib-bin wheel)") from None
        self.predictor_path = str(predictor_path)
        self.upsample = upsample
        self.threshold = threshold
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(self.predictor_path)
        self._lock = threading.Lock()  # dlib objects are not documented as thread-safe

    def detect(self, image_u8: np.ndarray) -> list[Detection]:
        image = np.ascontiguousarray(image_u8)
        with self._lock:
            rects, scores, _ = self._detector.run(image, self.upsample, self.threshold)
            shapes = [self._predictor(image, rect) for rect in rects]
        faces = []
        for rect, score, shape in zip(rects, scores, shapes):
            landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.int64)
            faces.append(Detection((rect.left(), rect.top(), rect.right(), rect.bottom()),
                                   five_points(landmarks), float(score), landmarks))
        return faces

    def describe(self) -> str:
        return (f"dlib HOG + 68-point predictor ({self.predictor_path}; the predictor is trained on "
                f"iBUG 300-W, whose licence excludes commercial use)")
