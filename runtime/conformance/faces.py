"""The face alignment (stage 2) and paste-back (stage 4) reference files, checked with the
runtime's own numpy code. They involve no network, so every backend shares one result.

Crops come from the photo and the stored 68 landmarks; stage 4 from the photo, the enhanced
crops and the stored affines (the files describe why). uint8 arrays are judged on their
largest difference and on the share of values that differ at all.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..faces.align import aligned_crops
from ..faces.geometry import five_points, similarity, template
from ..faces.paste import paste_faces
from .vectors import Comparison, UnknownKind, load_vector

ALIGN_KINDS = {"face_align": 256, "face_align_512": 512}
BLEND_KINDS = {"face_blend": 256, "face_blend_512": 512}
FACE_KINDS = {**ALIGN_KINDS, **BLEND_KINDS}


def compute_align(z: dict) -> dict:
    """Stage 2 from the photo and the stored 68 landmarks."""
    size = int(z["aligned_faces"].shape[1])
    points = five_points(z["landmarks68"])
    affines = np.stack([similarity(template(size), p) for p in points]) if len(points) else np.zeros((0, 3, 3))
    return {"points5": points, "affine": affines, "aligned_faces": aligned_crops(z["image"], affines, size),
            "template": template(size)}


def compute_blend(z: dict, full_frame: bool = True) -> dict:
    """Stage 4 from the photo, the enhanced crops and the stored affines."""
    output, faces = paste_faces(z["image"], z["enhanced_faces"], z["affine"], full_frame=full_frame)

    def stack(name: str) -> np.ndarray:
        return np.stack([getattr(f, name) for f in faces])

    return {"affine_inverse": np.linalg.inv(z["affine"]), "aligned_faces_trunc": stack("reference"),
            "forward_masks": stack("forward_mask"), "matched_faces": stack("matched"),
            "warped_back": stack("warped"), "backward_masks": stack("backward_mask"),
            "masks_eroded": stack("eroded"), "masks_blurred": stack("weight"), "output": output}


def compute(z: dict, kind: str) -> dict:
    if kind in ALIGN_KINDS:
        return compute_align(z)
    if kind in BLEND_KINDS:
        return compute_blend(z)
    raise UnknownKind(f"unknown faces kind {kind!r}; known: {', '.join(FACE_KINDS)}")


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |ours - stored|, share of values that differ at all); inf on a shape mismatch."""
    if ours.shape != ref.shape:
        return float("inf"), 1.0
    if ref.dtype == np.float32:  # stored in float32: compare what we would have stored
        ours = ours.astype(np.float32)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    share = float((diff > 0).mean()) if diff.size else 0.0
    return worst, share


def check_face_file(path: str | Path) -> tuple[dict, list[Comparison]]:
    """Every output the file names, within its tolerance (and tolerance_fraction for uint8)."""
    meta, arrays = load_vector(path)
    ours = compute(arrays, meta["kind"])
    comparisons = []
    for name in meta["outputs"]:
        worst, share = compare(name, np.asarray(ours[name]), arrays[name])
        fraction = meta.get("tolerance_fraction", {}).get(name)
        comparisons.append(Comparison(name, worst, float(meta["tolerance"][name]), fraction=share,
                                      tolerance_fraction=fraction))
    return meta, comparisons
