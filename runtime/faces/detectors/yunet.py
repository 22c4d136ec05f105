"""OpenCV's YuNet face detector (cv2.FaceDetectorYN) with a user-supplied ONNX model
(OpenCV Zoo, MIT licence). Each row of its output is x, y, w, h, five points (the
subject's right eye first, i.e. the image's left, as the template) and a score."""
from __future__ import annotations

import os
import threading

import numpy as np

from .base import Detection, DetectorUnavailable


def parse_rows(rows) -> list[Detection]:
    """Detections from FaceDetectorYN's N x 15 output (None when there is no face)."""
    if rows is None:
        return []
    faces = []
    for row in np.asarray(rows, dtype=np.float64).reshape(-1, 15):
        x, y, w, h = row[:4]
        faces.append(Detection((x, y, x + w, y + h), row[4:14].reshape(5, 2).copy(), float(row[14])))
    return faces


class YunetDetector:
    name = "yunet"

    def __init__(self, model_path, score_threshold: float = 0.6, nms_threshold: float = 0.3):
        import cv2

        if not model_path or not os.path.isfile(model_path):
            raise DetectorUnavailable(f"{model_path}: YuNet model not found; download "
                                      "face_detection_yunet_2023mar.onnx from the OpenCV Zoo and pass its path")
        self.model_path = str(model_path)
        self._detector = cv2.FaceDetectorYN.create(self.model_path, "", (320, 320), score_threshold, nms_threshold)
        self._lock = threading.Lock()  # the detector object holds its input size

    def detect(self, image_u8: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(image_u8[:, :, ::-1])
        with self._lock:
            self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._detector.detect(bgr)
        return parse_rows(rows)

    def describe(self) -> str:
        return f"YuNet via OpenCV FaceDetectorYN ({self.model_path}; OpenCV Zoo model, MIT licence)"
