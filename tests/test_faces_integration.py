"""Faces inside the public API and the CLI: on when the face graph and a detector exist,
off with a clear note otherwise, an error when required but missing, stage outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from faces_support import FakeDetector, exported_face_models, reference_detections, reference_file
from trt_restore.cli import app
from trt_restore.io import read_image, write_image
from trt_restore.restorer import Restorer


@pytest.fixture(scope="module")
def scratch_d():
    z = reference_file("face_align_scratch_d")
    if z is None:
        pytest.skip("face_align_scratch_d not in the reference root")
    return z


@pytest.fixture(scope="module")
def all_models(exported_models, synthetic_release, tmp_path_factory):
    """Global graphs + face_256 in one model directory (links, merged manifest)."""
    faces = exported_face_models(synthetic_release, tmp_path_factory)
    out = tmp_path_factory.mktemp("models_all")
    manifest = json.loads((exported_models / "models.json").read_text())
    face_manifest = json.loads((faces / "models.json").read_text())
    manifest["graphs"].update(face_manifest["graphs"])
    for folder in (exported_models, faces):
        for path in folder.iterdir():
            if path.name != "models.json" and not (out / path.name).exists():
                (out / path.name).symlink_to(path)
    (out / "models.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture
def fake_detector(monkeypatch, scratch_d):
    detector = FakeDetector(reference_detections(scratch_d))
    monkeypatch.setattr("trt_restore.faces.stage.default_detector", lambda *a, **k: detector)
    return detector


def test_faces_off_with_note_when_graph_missing(exported_models):
    restorer = Restorer(exported_models, backend="ort", threads=2)
    assert restorer.face_note.startswith("faces: off") and "face_256" in restorer.face_note
    with pytest.raises(FileNotFoundError, match="face enhancement requested"):
        Restorer(exported_models, backend="ort", threads=2, faces=True)


def test_restorer_enhances_faces(all_models, fake_detector, scratch_d):
    restorer = Restorer(all_models, backend="ort", threads=2)
    assert restorer.face_note.startswith("faces: on, 256 px")
    photo = scratch_d["image"]
    result = restorer.restore_with_stages(photo)
    assert fake_detector.calls == 1
    assert len(result.faces.enhanced_faces) == 2
    assert result.restored.shape == result.global_restored.shape == photo.shape
    assert not np.array_equal(result.restored, result.global_restored)
    assert {"faces_detect", "faces_enhance", "faces_paste", "encode"} <= set(result.timings)
    off = Restorer(all_models, backend="ort", threads=2, faces=False)
    assert off.face_note == "faces: off"
    np.testing.assert_array_equal(off.restore(photo), result.global_restored)


def test_restorer_without_faces_in_photo_passes_through(all_models, monkeypatch):
    monkeypatch.setattr("trt_restore.faces.stage.default_detector", lambda *a, **k: FakeDetector([]))
    restorer = Restorer(all_models, backend="ort", threads=2)
    photo = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    result = restorer.restore_with_stages(photo)
    assert result.faces.faces == [] and result.restored is result.global_restored


def test_cli_save_stages_writes_face_crops(all_models, fake_detector, scratch_d, tmp_path):
    photo = tmp_path / "in" / "couple.png"
    write_image(photo, scratch_d["image"])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["restore", str(photo), "-o", str(out), "-m", str(all_models),
                                      "--backend", "ort", "--threads", "2", "--save-stages"])
    assert result.exit_code == 0, result.output
    assert "faces: on" in result.output
    for name in ("couple.png", "couple_global.png", "couple_face1_crop.png", "couple_face2_enhanced.png"):
        assert (out / name).is_file(), name
    assert read_image(out / "couple_face1_crop.png").shape == (256, 256, 3)


def test_cli_faces_flag_errors_clearly_when_missing(exported_models, tmp_path):
    photo = tmp_path / "p.png"
    write_image(photo, np.full((32, 32, 3), 128, np.uint8))
    runner = CliRunner()
    result = runner.invoke(app, ["restore", str(photo), "-o", str(tmp_path / "o"), "-m", str(exported_models),
                                 "--backend", "ort", "--faces"])
    assert result.exit_code == 2 and "face enhancement requested but unavailable" in result.output
    result = runner.invoke(app, ["restore", str(photo), "-o", str(tmp_path / "o"), "-m", str(exported_models),
                                 "--backend", "ort"])
    assert result.exit_code == 0 and "faces: off (" in result.output


def test_face_modules_never_import_torch():
    import subprocess
    import sys

    code = ("import sys\n"
            "import trt_restore.faces.enhancer, trt_restore.faces.stage, trt_restore.faces.detectors.scrfd\n"
            "import trt_restore.faces.detectors.dlib_hog, trt_restore.faces.detectors.yunet, trt_restore.faces.fetch_models\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'torch']\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_model_file_without_detector_name_is_a_usage_error(exported_models, tmp_path):
    with pytest.raises(ValueError, match="--face-detector"):
        Restorer(exported_models, backend="ort", threads=2, face_detector_model=tmp_path / "m.onnx")
