"""Face alignment and paste-back against every faces/*.npz under the reference root.

Each file is dispatched on meta["kind"]; every stored output is compared within the
tolerance stored with it (max-abs, and for uint8 the share of differing values). Run with
-s to see the measured errors per output per file.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import reference_root
from trt_restore.conformance.faces import check_face_file, compute
from trt_restore.conformance.vectors import UnknownKind
from trt_restore.faces.geometry import template
from trt_restore.faces.paste import paste_faces


def face_files() -> list:
    root = reference_root()
    return sorted(root.rglob("faces/*.npz")) if root.is_dir() else []


@pytest.mark.parametrize("path", face_files(), ids=lambda p: p.stem)
def test_faces_vector(path):
    """The same check `trt-restore conformance` runs (trt_restore.conformance.faces)."""
    meta, comparisons = check_face_file(path)
    assert {c.name for c in comparisons} == set(meta["outputs"])
    print(f"\n{path.stem} [{meta['kind']}]: " + "; ".join(map(str, comparisons)))
    failures = [str(c) for c in comparisons if not c.ok]
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
    with pytest.raises(UnknownKind, match="unknown faces kind"):
        compute({}, "face_warp_3d")
