"""The face stage end to end with deterministic detections (stored in the reference files or
faked): pass-through, tiny faces, border faces, many faces, grayscale, 256/512 crops, and
the real exported generator on onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from faces_support import (FakeDetector, IdentityBackend, exported_face_models, reference_detections,
                           reference_file, shifted)
from trt_restore.faces.enhancer import MIN_EYE_DISTANCE, FaceEnhancer
from trt_restore.faces.generator import from_generator_output, to_generator_input


def _need(name: str):
    z = reference_file(name)
    if z is None:
        pytest.skip(f"{name} not in the reference root")
    return z


def _enhancer(detections, size=256, backend=None, **kw):
    return FaceEnhancer(backend or IdentityBackend(), FakeDetector(detections), crop_size=size, **kw)


def test_no_faces_pass_through():
    photo = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    result = _enhancer([]).enhance(photo)
    assert result.image is photo and result.faces == []
    assert "detect" in result.timings


@pytest.mark.parametrize("name,size", [("face_align_scratch_d", 256), ("face_align_512_scratch_c", 512),
                                       ("face_align_old_a", 256)])
def test_crops_are_the_reference_crops(name, size):
    """Detections of the reference file -> the pipeline cuts exactly the stored crops
    (old_a: the face is cut by the picture's left edge)."""
    z = _need(name)
    backend = IdentityBackend()
    result = _enhancer(reference_detections(z), size, backend).enhance(z["image"])
    assert len(result.enhanced_faces) == len(z["aligned_faces"])
    for record, crop, affine in zip(result.faces, z["aligned_faces"], z["affine"]):
        np.testing.assert_array_equal(record.crop, crop)
        np.testing.assert_allclose(record.affine, affine, atol=1e-9)
    assert result.image.shape == z["image"].shape and result.image.dtype == np.uint8
    assert backend.batches and all(b[1:] == (3, size, size) for b in backend.batches)


def test_identity_enhancement_changes_little():
    """With an identity generator, crop -> match -> warp back -> blend nearly restores the photo."""
    z = _need("face_align_scratch_d")
    result = _enhancer(reference_detections(z)).enhance(z["image"])
    diff = np.abs(result.image.astype(int) - z["image"].astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 12


def test_tiny_faces_are_skipped():
    z = _need("face_align_scratch_d")
    face = reference_detections(z)[0]
    tiny = shifted(face, 0, 0, scale=0.9 * MIN_EYE_DISTANCE / face.eye_distance)
    assert tiny.eye_distance < MIN_EYE_DISTANCE
    photo = z["image"]  # (each npz access loads a new array)
    result = _enhancer([tiny]).enhance(photo)
    assert result.image is photo
    assert result.faces[0].skipped.startswith("too small")


def test_face_mostly_outside_the_photo():
    """A face whose window hangs far over the top-left corner is still pasted without error."""
    z = _need("face_align_scratch_d")
    face = reference_detections(z)[0]
    corner = shifted(face, -face.points5[2][0] + 5, -face.points5[2][1] + 5)  # nose at (5, 5)
    result = _enhancer([corner]).enhance(z["image"])
    assert len(result.enhanced_faces) == 1 and result.image.shape == z["image"].shape
    changed = np.argwhere(np.any(result.image != z["image"], axis=2))
    assert changed.size == 0 or changed.max(axis=0).max() < 200  # only near that corner


def test_many_faces_collage():
    """12 faces in a 4 x 3 collage: all enhanced, the generator run one face at a time
    (a batch of four 512 px faces peaked at 4.1 GB: runtime/faces/generator.py)."""
    z = _need("face_align_scratch_c")
    tile = z["image"]
    h, w = tile.shape[:2]
    collage = np.tile(tile, (3, 4, 1))
    (face,) = reference_detections(z)
    faces = [shifted(face, c * w, r * h) for r in range(3) for c in range(4)]
    backend = IdentityBackend()
    result = _enhancer(faces, backend=backend).enhance(collage)
    assert len(result.enhanced_faces) == 12
    assert [b[0] for b in backend.batches] == [1] * 12
    single = _enhancer([face]).enhance(tile).image
    for r in range(3):  # each tile is pasted like the single photo (windows do not overlap)
        for c in range(4):
            np.testing.assert_array_equal(result.image[r * h:(r + 1) * h, c * w:(c + 1) * w], single)


class TintBackend(IdentityBackend):
    """A generator that adds colour (red up, blue down)."""

    def run(self, graph, inputs):
        out = inputs["face"].copy()
        out[:, 0] = np.clip(out[:, 0] + 0.3, -1, 1)
        out[:, 2] = np.clip(out[:, 2] - 0.3, -1, 1)
        return {"output": out}


def test_grayscale_photo_stays_gray():
    z = _need("face_align_scratch_d")
    gray = np.repeat(z["image"].mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    result = _enhancer(reference_detections(z), backend=TintBackend()).enhance(gray)
    assert not np.array_equal(result.image, gray)
    assert (result.image[..., 0] == result.image[..., 1]).all() and (result.image[..., 1] == result.image[..., 2]).all()
    coloured = _enhancer(reference_detections(z), backend=TintBackend()).enhance(gray, grayscale=False)
    assert not (coloured.image[..., 0] == coloured.image[..., 2]).all()


def test_generator_io_matches_the_original_transforms():
    """Input: ToTensor + Normalize(0.5, 0.5); output: save_image((g + 1) / 2)."""
    crops = np.arange(256, dtype=np.uint8)[None, :, None, None].repeat(3, axis=3).repeat(2, axis=2)
    x = to_generator_input(crops)
    assert x.dtype == np.float32 and x.shape == (1, 3, 256, 2)
    np.testing.assert_array_equal(x[0, 0, :, 0], (np.arange(256, dtype=np.float32) / 255 - 0.5) / 0.5)
    g = np.array([-1.0, -0.999, 0.0, 0.5, 1.0, 1.2], np.float32).reshape(1, 1, 1, 6).repeat(3, axis=1)
    assert from_generator_output(g)[0, 0, :, 0].tolist() == [0, 0, 128, 191, 255, 255]
    np.testing.assert_array_equal(from_generator_output(x), crops)  # exact round trip


def test_real_generator_on_onnxruntime(synthetic_release, tmp_path_factory):
    """The exported face_256 graph (synthetic weights) through the whole stage."""
    from trt_restore.backends import create_backend

    z = _need("face_align_scratch_d")
    backend = create_backend("ort", exported_face_models(synthetic_release, tmp_path_factory), threads=2)
    result = FaceEnhancer(backend, FakeDetector(reference_detections(z))).enhance(z["image"])
    assert len(result.enhanced_faces) == 2
    for record in result.enhanced_faces:
        assert record.enhanced.shape == (256, 256, 3) and record.enhanced.dtype == np.uint8
        assert not np.array_equal(record.enhanced, record.crop)
    assert result.image.shape == z["image"].shape and not np.array_equal(result.image, z["image"])
    assert set(result.timings) == {"detect", "align", "enhance", "paste"}


@pytest.mark.slow
def test_real_generator_512(synthetic_release, tmp_path_factory):
    from trt_restore.backends import create_backend

    z = _need("face_align_512_scratch_c")
    backend = create_backend("ort", exported_face_models(synthetic_release, tmp_path_factory, "face_512"), threads=2)
    result = FaceEnhancer(backend, FakeDetector(reference_detections(z)), crop_size=512).enhance(z["image"])
    assert result.enhanced_faces[0].enhanced.shape == (512, 512, 3)


def test_opencv_sampler_is_an_explicit_close_option():
    z = _need("face_align_scratch_d")
    exact = _enhancer(reference_detections(z)).enhance(z["image"]).image
    fast = _enhancer(reference_detections(z), sampler="opencv").enhance(z["image"]).image
    assert np.abs(exact.astype(int) - fast.astype(int)).max() <= 16
    with pytest.raises(ValueError, match="sampler"):
        _enhancer([], sampler="bilinear")
