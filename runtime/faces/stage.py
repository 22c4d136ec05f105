"""Deciding whether the face stage can run, and building it for a restoration mode.

`faces=None` means "when possible": on if the generator graph for the mode is exported and
a detector is available, otherwise off with a note saying what is missing. `faces=True`
turns a missing piece into an error.
"""
from __future__ import annotations

from .detectors import DetectorUnavailable, create_detector, default_detector
from .enhancer import FaceEnhancer
from ..modes import mode_spec
from .generator import GRAPH_FOR_SIZE



class FacesUnavailable(FileNotFoundError):
    """The face stage was requested but cannot run; the message says why and what to do."""


def missing_graph(backend, mode: str) -> str | None:
    """Why the mode's face generator cannot run on `backend`, or None when it can."""
    graph = GRAPH_FOR_SIZE[mode_spec(mode).face_crop]
    store = backend.store
    if store is None:
        return None
    try:
        store.graph_path(graph)
    except FileNotFoundError as err:
        return f"{err} (export it with `trt-restore export --weights WEIGHTS -o {store.root}`)"
    return None


def build_face_stage(backend, mode: str, faces: bool | None = None, detector: str | None = None,
                     detector_model=None, threads: int | None = None) -> tuple[FaceEnhancer | None, str]:
    """(FaceEnhancer or None, one-line note for logs). Raises FacesUnavailable when
    `faces` is True and something is missing."""
    if faces is False:
        return None, "faces: off"
    if detector_model is not None and detector in (None, "auto"):
        raise ValueError("a face detector model file needs the detector named too (--face-detector scrfd|dlib|yunet)")
    problem = missing_graph(backend, mode)
    chosen = None
    if problem is None:
        models_dir = backend.store.root if backend.store is not None else None
        try:
            if detector in (None, "auto"):
                chosen = default_detector(models_dir, threads)
            else:
                chosen = create_detector(detector, detector_model, models_dir, threads)
        except DetectorUnavailable as err:
            problem = str(err)
    if problem is not None:
        if faces:
            raise FacesUnavailable(f"face enhancement requested but unavailable: {problem}")
        return None, f"faces: off ({problem})"
    size = mode_spec(mode).face_crop  # the original enhances 512 px faces in HR mode
    return FaceEnhancer(backend, chosen, crop_size=size), f"faces: on, {size} px, {chosen.describe()}"
