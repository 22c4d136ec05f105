"""Face alignment and paste-back against every faces/*.npz under the reference root.

Each file is dispatched on meta["kind"]; every stored output is compared within the
tolerance stored with it (max-abs, and for uint8 the share of differing values). Run with
-s to see the measured errors per output per file.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import reference_root
from trt_restore.faces.align import aligned_crops
from trt_restore.faces.geometry import five_points, similarity, template
from trt_restore.faces.paste import paste_faces

ALIGN_KINDS = {"face_align": 256, "face_align_512": 512}
BLEND_KINDS = {"face_blend": 256, "face_blend_512": 512}


def face_files() -> list:
    root = reference_root()
    return sorted(root.rglob("faces/*.npz")) if root.is_dir() else []


def compute_align(z) -> dict:
    """Stage 2 from the photo and the stored 68 landmarks."""
    size = int(z["aligned_faces"].shape[1])
    points = five_points(z["landmarks68"])
    affines = np.stack([similarity(template(size), p) for p in points]) if len(points) else np.zeros((0, 3, 3))
    return {"points5": points, "affine": affines, "aligned_faces": aligned_crops(z["image"], affines, size),
            "template": template(size)}


def compute_blend(z, full_frame: bool = True) -> dict:
    """Stage 4 from the photo, the enhanced crops and the stored affines."""
    output, faces = paste_faces(z["image"], z["enhanced_faces"], z["affine"], full_frame=full_frame)
    stack = lambda name: np.stack([getattr(f, name) for f in faces])  # noqa: E731
    return {"affine_inverse": np.linalg.inv(z["affine"]), "aligned_faces_trunc": stack("reference"),
            "forward_masks": stack("forward_mask"), "matched_faces": stack("matched"),
            "warped_back": stack("warped"), "backward_masks": stack("backward_mask"),
            "masks_eroded": stack("eroded"), "masks_blurred": stack("weight"), "output": output}


def compute(z, kind: str) -> dict:
    if kind in ALIGN_KINDS:
        return compute_align(z)
    if kind in BLEND_KINDS:
        return compute_blend(z)
    raise AssertionError(f"unknown faces kind {kind!r}: add support for it")


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |ours - stored|, share of values that differ at all)."""
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != stored {ref.shape}"
    if ref.dtype == np.float32:  # stored in float32: compare what we would have stored
        ours = ours.astype(np.float32)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    share = float((diff > 0).mean()) if diff.size else 0.0
    return worst, share


@pytest.mark.parametrize("path", face_files(), ids=lambda p: p.stem)
def test_faces_vector(path):
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    ours = compute(z, meta["kind"])
    failures, report = [], []
    for name in meta["outputs"]:
        tolerance = meta["tolerance"][name]
        fraction = meta.get("tolerance_fraction", {}).get(name)
        worst, share = compare(name, ours[name], z[name])
        report.append(f"{name} max {worst:.3g} (tol {tolerance}) differ {share:.4%}"
                      + (f" (tol {fraction:.2%})" if fraction is not None else ""))
        if worst > tolerance or (fraction is not None and share > fraction):
            failures.append(report[-1])
    print(f"\n{path.stem} [{meta['kind']}]: " + "; ".join(report))
    assert not failures, f"{path.name}: " + "; ".join(failures)


@pytest.mark.parametrize("path", [p for p in face_files() if "blend" in p.stem], ids=lambda p: p.stem)
def test_footprint_window_equals_full_frame(path):
    """Restricting stage 4 to each face's footprint gives the full-frame result exactly."""
    z = np.load(path)
    windowed, _ = paste_faces(z["image"], z["enhanced_faces"], z["affine"])
    full, _ = paste_faces(z["image"], z["enhanced_faces"], z["affine"], full_frame=True)
    np.testing.assert_array_equal(windowed, full)


@pytest.mark.parametrize("path", [p for p in face_files() if "align" in p.stem], ids=lambda p: p.stem)
def test_template_matches_stored(path):
    z = np.load(path)
    np.testing.assert_array_equal(template(int(z["aligned_faces"].shape[1])), z["template"])


def test_there_are_face_vectors():
    assert face_files(), f"no faces/*.npz under {reference_root()}"


def test_unknown_kind_fails():
    with pytest.raises(AssertionError, match="unknown faces kind"):
        compute({}, "face_warp_3d")
