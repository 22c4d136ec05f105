"""Calibration set: seeded degradations are reproducible bit for bit, with a manifest."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trt_restore.calibration.dataset import CalibrationSet, CalibrationSetError, build_calibration_set
from trt_restore.calibration.degrade import DegradationConfig, degrade
from trt_restore.calibration.procedural import procedural_image
from trt_restore.cli import app

DATA = Path(__file__).parent / "data"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_same_bytes_other_seed_other_pictures(tmp_path):
    a = build_calibration_set(tmp_path / "a", count=3, size=64, seed=7)
    b = build_calibration_set(tmp_path / "b", count=3, size=64, seed=7)
    c = build_calibration_set(tmp_path / "c", count=3, size=64, seed=8)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_items_do_not_depend_on_the_count(tmp_path):
    """Item i is drawn from (seed, i) only: a bigger set starts with the smaller one."""
    build_calibration_set(tmp_path / "small", count=2, size=64, seed=3)
    build_calibration_set(tmp_path / "big", count=4, size=64, seed=3)
    for name in ("degraded/0000.png", "degraded/0001.png", "masks/0001.png"):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "big" / name).read_bytes()


def test_manifest_describes_every_item(tmp_path):
    calibration = build_calibration_set(tmp_path, count=4, size=96, seed=0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["count"] == 4 and manifest["size"] == 96 and manifest["seed"] == 0
    assert manifest["fingerprint"] == calibration.fingerprint()
    assert manifest["source"] == "procedural"
    for item in manifest["items"]:
        image, mask = CalibrationSet.open(tmp_path).load(item["index"])
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}
        assert abs((mask > 0).mean() - item["mask_fraction"]) < 1e-4
        assert "colour" in item["degradations"] and "defects" in item["degradations"]


def test_folder_source_is_cropped_and_reused(tmp_path):
    calibration = build_calibration_set(tmp_path / "set", source=DATA, count=5, size=128, seed=1)
    sources = [item["source"]["file"] for item in calibration.items]
    assert sources[:3] == sorted(p.name for p in DATA.glob("*.png"))[:3] and sources[3] == sources[0]
    assert calibration.items[0]["source"]["crop"] != calibration.items[3]["source"]["crop"]
    image, _ = calibration.load(4)
    assert image.shape == (128, 128, 3)


def test_degradations_change_the_picture_and_draw_scratches():
    rng = np.random.default_rng(0)
    clean = procedural_image(rng, 128, 160)
    always = DegradationConfig(scratch_prob=1.0, crease_prob=1.0, blur_prob=1.0, noise_prob=1.0, grain_prob=1.0,
                               jpeg_prob=1.0, fade_prob=1.0, cast_prob=1.0, halftone_prob=1.0, paper_prob=1.0)
    result = degrade(clean, np.random.default_rng(1), always)
    assert result.image.shape == clean.shape and result.image.dtype == np.uint8
    assert (result.mask > 0).mean() > 0.005
    assert np.abs(result.image.astype(int) - clean).mean() > 5
    for key in ("fade", "cast", "blur_sigma", "halftone", "paper", "grain_sigma", "noise", "jpeg_quality"):
        assert key in result.params, key
    kinds = {d["kind"] for d in result.params["defects"]}
    assert {"scratch", "crease"} <= kinds
    json.dumps(result.params)  # manifest-ready
    again = degrade(clean, np.random.default_rng(1), always)
    assert np.array_equal(again.image, result.image) and np.array_equal(again.mask, result.mask)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(CalibrationSetError, match="multiple of 16"):
        build_calibration_set(tmp_path, count=1, size=100)
    with pytest.raises(CalibrationSetError, match="no images"):
        build_calibration_set(tmp_path / "out", source=tmp_path, count=1, size=64)
    with pytest.raises(CalibrationSetError, match="no calibration manifest"):
        CalibrationSet.open(tmp_path / "nowhere")


def test_calibrate_data_command(tmp_path):
    result = CliRunner().invoke(app, ["calibrate-data", str(tmp_path / "cal"), "--count", "2", "--size", "64",
                                      "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cal" / "manifest.json").is_file()
    assert len(list((tmp_path / "cal" / "degraded").glob("*.png"))) == 2
    bad = CliRunner().invoke(app, ["calibrate-data", str(tmp_path / "x"), "--size", "70"])
    assert bad.exit_code == 2
