"""Helpers shared by the face tests: reference detections, fake detector and generator,
and the face graphs exported once per test session."""
from __future__ import annotations

import numpy as np

from conftest import reference_root
from trt_restore.backends.base import Backend
from trt_restore.faces.detectors.base import Detection
from trt_restore.faces.geometry import five_points

_EXPORTS: dict = {}


def reference_file(name: str):
    path = next(iter(sorted(reference_root().rglob(f"faces/{name}.npz"))), None)
    return np.load(path) if path is not None else None


def reference_detections(z) -> list[Detection]:
    """The dlib detections a reference file stored (rectangles, 68 landmarks)."""
    scores = z["det_scores"] if "det_scores" in z.files else np.ones(len(z["rects"]))
    return [Detection(tuple(float(v) for v in rect), five_points(lm), float(s), lm)
            for rect, lm, s in zip(z["rects"], z["landmarks68"], scores)]


def shifted(detection: Detection, dx: float, dy: float, scale: float = 1.0) -> Detection:
    """The same face moved by (dx, dy) after scaling about the origin."""
    box = detection.box
    return Detection((box[0] * scale + dx, box[1] * scale + dy, box[2] * scale + dx, box[3] * scale + dy),
                     np.asarray(detection.points5, float) * scale + [dx, dy], detection.score)


class FakeDetector:
    """Returns fixed detections, counting calls."""

    name = "fake"

    def __init__(self, detections):
        self.detections = list(detections)
        self.calls = 0

    def detect(self, image_u8):
        self.calls += 1
        return list(self.detections)

    def describe(self):
        return "fake detector"


class IdentityBackend(Backend):
    """A backend whose face graphs return their input (enhancement = identity)."""

    name = "identity"

    def __init__(self):
        self.batches = []

    def run(self, graph, inputs):
        assert graph in ("face_256", "face_512"), graph
        self.batches.append(inputs["face"].shape)
        return {"output": inputs["face"]}

    def describe(self):
        return "identity"


def exported_face_models(synthetic_release, tmp_path_factory, graph: str = "face_256"):
    """A model directory holding `graph`, exported once per session (~1 min, 370 MB)."""
    if graph not in _EXPORTS:
        from trt_restore.export.graphs import GRAPH_BY_NAME
        from trt_restore.export.onnx_export import ExportPlan, export_all

        spec = GRAPH_BY_NAME[graph]
        synthetic_release.ensure(spec.tag)
        out = tmp_path_factory.mktemp(f"models_{graph}")
        export_all(ExportPlan(synthetic_release.root, out, (spec,)))
        _EXPORTS[graph] = out
    return _EXPORTS[graph]
