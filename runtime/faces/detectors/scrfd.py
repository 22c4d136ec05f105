"""SCRFD face detector (ONNX, onnxruntime on the CPU): boxes, five points and scores.

The network sees the photo letterboxed into its input (aspect kept, scaled so the longer
side fits, placed top-left, zero padding), RGB normalised as (v - 127.5) / 128. Each of
the three heads (strides 8, 16, 32) predicts, for 2 anchors per cell centred at
(col * stride, row * stride), a score, distances (left, top, right, bottom) to the box
edges and offsets to the five points, all in units of the stride. Candidates above the
score threshold are merged by greedy NMS.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from .base import Detection, DetectorUnavailable

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


def letterbox(image_u8: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(network input 1x3xHxW float32, (x, y) photo pixels per input pixel)."""
    import cv2

    h, w = image_u8.shape[:2]
    ratio = min(height / h, width / w)
    new_h, new_w = max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))
    resized = cv2.resize(image_u8, (new_w, new_h), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.float32)
    canvas[:new_h, :new_w] = (resized.astype(np.float32) - 127.5) / 128.0
    return canvas.transpose(2, 0, 1)[None].copy(), np.array([w / new_w, h / new_h])


def anchor_centres(height: int, width: int, stride: int) -> np.ndarray:
    """(cells * anchors, 2) x, y of every anchor of one head, row-major, anchors adjacent."""
    rows, cols = height // stride, width // stride
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)


def decode(outputs: dict[str, np.ndarray], height: int, width: int, threshold: float):
    """(scores N, boxes N x 4, points N x 5 x 2) in input pixels, over all heads."""
    scores, boxes, points = [], [], []
    for stride in STRIDES:
        centres = anchor_centres(height, width, stride)
        score = outputs[f"score_{stride}"].reshape(-1)
        keep = score >= threshold
        if not keep.any():
            continue
        c = centres[keep]
        dist = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep] * stride
        kps = outputs[f"kps_{stride}"].reshape(-1, 10)[keep] * stride
        boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1))
        points.append(c[:, None, :] + kps.reshape(-1, 5, 2))
        scores.append(score[keep])
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32)
    return np.concatenate(scores), np.concatenate(boxes), np.concatenate(points)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression, best score first; returns kept indices in that order."""
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        h = np.maximum(0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


class ScrfdDetector:
    name = "scrfd"

    def __init__(self, model_path, score_threshold: float = 0.5, iou_threshold: float = 0.4,
                 input_size: int = 640, threads: int | None = None):
        import onnxruntime as ort

        if not os.path.isfile(model_path):
            raise DetectorUnavailable(f"{model_path}: SCRFD model not found "
                                      f"(python -m trt_restore.faces.fetch_models)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        self.model_path = str(model_path)
        self.session = ort.InferenceSession(self.model_path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        fixed = [d if isinstance(d, int) else None for d in shape[2:]]
        self.height = fixed[0] or input_size
        self.width = fixed[1] or input_size
        names = {o.name for o in self.session.get_outputs()}
        expected = {f"{k}_{s}" for k in ("score", "bbox", "kps") for s in STRIDES}
        if not expected <= names:
            raise DetectorUnavailable(f"{model_path}: not an SCRFD model with keypoints "
                                      f"(outputs {sorted(names)}, expected {sorted(expected)})")
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self._lock = threading.Lock()

    def detect(self, image_u8: np.ndarray) -> list[Detection]:
        blob, scale = letterbox(image_u8, self.height, self.width)
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(names, {self.input_name: blob})))
        scores, boxes, points = decode(outputs, self.height, self.width, self.score_threshold)
        faces = []
        for k in nms(boxes, scores, self.iou_threshold):
            box = tuple(float(v) for v in (boxes[k].reshape(2, 2) * scale).ravel())
            faces.append(Detection(box, points[k].astype(np.float64) * scale, float(scores[k])))
        return faces

    def describe(self) -> str:
        return (f"SCRFD ONNX ({self.model_path}; an insightface-trained model: insightface's pretrained "
                f"models are licensed for non-commercial research only)")
