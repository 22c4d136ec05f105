"""Face detectors behind one interface (boxes + five points + score).

`dlib` is the original's detector (HOG + 68 landmarks); `scrfd` is an ONNX detector with
better recall on old photos; `yunet` is OpenCV's detector with a user-supplied model.
"""
from __future__ import annotations

from .. import model_files
from .base import Detection, Detector, DetectorUnavailable

DETECTORS = ("dlib", "scrfd", "yunet")
PREFERENCE = ("scrfd", "dlib", "yunet")  # best measured recall first (benchmarks/faces.md)


def create_detector(name: str, model_path=None, models_dir=None, threads: int | None = None) -> Detector:
    """A ready detector; DetectorUnavailable (with what to install) when it cannot run."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r} (choose {', '.join(DETECTORS)})")
    path = model_files.locate(name, model_path, models_dir)
    if path is None:
        where = model_path or model_files.searched(name, models_dir)
        raise DetectorUnavailable(f"{name} face detector: model file not found (looked in {where}); "
                                  + HOW_TO_GET[name])
    if name == "dlib":
        from .dlib_hog import DlibDetector

        return DlibDetector(path)
    if name == "scrfd":
        from .scrfd import ScrfdDetector

        return ScrfdDetector(path, threads=threads)
    from .yunet import YunetDetector

    return YunetDetector(path)


def default_detector(models_dir=None, threads: int | None = None) -> Detector:
    """The first detector of PREFERENCE that can run here."""
    problems = []
    for name in PREFERENCE:
        try:
            return create_detector(name, models_dir=models_dir, threads=threads)
        except DetectorUnavailable as err:
            problems.append(str(err))
    raise DetectorUnavailable("no face detector available: " + " | ".join(problems))


HOW_TO_GET = {
    "dlib": "pip install 'trt-restore[face]' (dlib-bin + face-recognition-models) or "
            "python -m trt_restore.faces.fetch_models dlib",
    "scrfd": "python -m trt_restore.faces.fetch_models scrfd (takes models/scrfd.onnx from the scrfd sdist on PyPI)",
    "yunet": "download face_detection_yunet_2023mar.onnx from the OpenCV Zoo and pass its path",
}

__all__ = ["DETECTORS", "Detection", "Detector", "DetectorUnavailable", "create_detector", "default_detector"]
