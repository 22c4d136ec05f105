"""Where the face detectors' model files are found, without importing the packages that
ship them (`face_recognition_models` imports pkg_resources, gone from recent setuptools).

Search order for each file: an explicit path, an environment variable, the exported model
directory, the face-model cache (`fetch_models` writes there), then an installed package.
"""
from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

CACHE = Path(os.environ.get("TRT_RESTORE_FACE_MODELS", "~/.cache/trt-restore/face-models")).expanduser()

DLIB_PREDICTOR = "shape_predictor_68_face_landmarks.dat"
DLIB_PREDICTOR_SHA256 = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"
SCRFD_MODEL = "scrfd.onnx"
SCRFD_SHA256 = "9c162a817c7dd32d35d1f1c6ae6445032d6e73c6c5fe61d8b5b663ba8bc86b30"  # scrfd 0.3.0 sdist
YUNET_GLOB = "face_detection_yunet*.onnx"

ENV = {"dlib": "TRT_RESTORE_DLIB_PREDICTOR", "scrfd": "TRT_RESTORE_SCRFD_MODEL", "yunet": "TRT_RESTORE_YUNET_MODEL"}


def installed_file(distribution: str, suffix: str) -> Path | None:
    """A file of an installed distribution, found through its RECORD (nothing imported)."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if str(entry).replace("\\", "/").endswith(suffix):
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    return None


def _candidates(kind: str, models_dir) -> list[Path]:
    places = [Path(os.environ[ENV[kind]]).expanduser()] if os.environ.get(ENV[kind]) else []
    for folder in ([Path(models_dir).expanduser()] if models_dir else []) + [CACHE]:
        if kind == "yunet":
            places.extend(sorted(folder.glob(YUNET_GLOB)))
        else:
            places.append(folder / (DLIB_PREDICTOR if kind == "dlib" else SCRFD_MODEL))
    if kind == "dlib":
        found = installed_file("face_recognition_models", f"models/{DLIB_PREDICTOR}")
        if found:
            places.append(found)
    return places


def locate(kind: str, explicit=None, models_dir=None) -> Path | None:
    """The model file of detector `kind` ('dlib', 'scrfd', 'yunet'), or None."""
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.is_file() else None
    return next((p for p in _candidates(kind, models_dir) if p.is_file()), None)


def searched(kind: str, models_dir=None) -> str:
    """The places `locate` looks at, for error messages."""
    name = {"dlib": DLIB_PREDICTOR, "scrfd": SCRFD_MODEL, "yunet": YUNET_GLOB}[kind]
    places = [f"${ENV[kind]}"] + [str(Path(d).expanduser() / name) for d in (models_dir, CACHE) if d]
    if kind == "dlib":
        places.append("the face_recognition_models package")
    return ", ".join(places)
