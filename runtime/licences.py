"""The licence of each model file, where it binds: a kiosk in a shop is a commercial use.

`doctor` and the service name them; `serve` runs a face detector whose model licence
excludes commercial use only when the operator says so (`--face-model-licence-ok`), and
prefers YuNet (MIT) when its file is supplied.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelLicence:
    model: str
    licence: str
    commercial: bool


RESTORATION = ModelLicence("restoration networks (official checkpoints of Bringing Old Photos Back to Life)",
                           "MIT (microsoft/Bringing-Old-Photos-Back-to-Life)", True)
DETECTORS = {
    "yunet": ModelLicence("YuNet face detector (OpenCV Zoo)", "MIT", True),
    "scrfd": ModelLicence("SCRFD face detector (insightface-trained)", "non-commercial research only", False),
    "dlib": ModelLicence("dlib HOG + 68-point predictor (trained on iBUG 300-W)", "no commercial use (iBUG 300-W)",
                         False),
}


def describe() -> list[str]:
    """One line per model for `doctor`."""
    rows = [RESTORATION, *DETECTORS.values()]
    return [f"  {row.model}: {row.licence}{'' if row.commercial else '  [NOT for commercial use]'}" for row in rows]


class LicenceRefused(ValueError):
    """The chosen face detector's model may not be used commercially without the operator's say-so."""


def choose_detector(detector: str | None, model: str | Path | None, models_dir=None,
                    licence_ok: bool = False) -> tuple[str | None, str]:
    """(detector name to use or None for faces off, one-line note) for a commercial service.

    auto: YuNet when its file is supplied or found; otherwise the best other detector only
    with `licence_ok`. A named non-commercial detector without `licence_ok` raises LicenceRefused."""
    from .faces import model_files

    if detector in (None, "auto"):
        if model_files.locate("yunet", model, models_dir) is not None:
            return "yunet", "face detector: yunet (MIT)"
        if model is not None:
            raise LicenceRefused(f"{model}: not found; name the detector with --face-detector")
        if licence_ok:
            return None, "face detector: best available (operator accepted non-commercial model licences)"
        return "off", ("faces off: no YuNet model file (--face-detector-model face_detection_yunet_2023mar.onnx); "
                       "SCRFD and dlib models are not for commercial use (--face-model-licence-ok to accept)")
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r} (choose {', '.join(DETECTORS)})")
    entry = DETECTORS[detector]
    if not entry.commercial and not licence_ok:
        raise LicenceRefused(f"the {detector} face model is licensed '{entry.licence}'; a kiosk is a commercial "
                             f"use. Supply YuNet (--face-detector yunet --face-detector-model FILE) or pass "
                             f"--face-model-licence-ok if your use is allowed")
    return detector, f"face detector: {detector} ({entry.licence})"
