"""The optional OpenCV path: runs, stays close to the reference, and its (documented)
difference is measured here (-s prints it)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_faces_conformance import face_files
from trt_restore.faces.opencv_path import aligned_crops_cv2, paste_faces_cv2


@pytest.mark.parametrize("path", face_files(), ids=lambda p: p.stem)
def test_opencv_path_difference(path):
    z = np.load(path)
    kind = json.loads(str(z["meta"]))["kind"]
    if kind.startswith("face_align"):
        ours, ref = aligned_crops_cv2(z["image"], z["affine"], z["aligned_faces"].shape[1]), z["aligned_faces"]
    else:
        ours, ref = paste_faces_cv2(z["image"], z["enhanced_faces"], z["affine"]), z["output"]
    diff = np.abs(ours.astype(int) - ref.astype(int))
    print(f"\n{path.stem}: opencv path max {diff.max()} levels, {np.mean(diff > 0):.2%} of values differ")
    assert ours.shape == ref.shape and diff.max() <= 16 and np.mean(diff > 0) < 0.5
