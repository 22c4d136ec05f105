"""Model licences where they bind: the service does not run a non-commercial face model in a
kiosk unless the operator says so; doctor names every licence and where TensorRT comes from."""
from __future__ import annotations

import importlib.util
import sysconfig
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from trt_restore import doctor, licences
from trt_restore.cli import app


def test_auto_prefers_yunet_when_supplied(tmp_path):
    model = tmp_path / "face_detection_yunet_2023mar.onnx"
    model.write_bytes(b"onnx")
    assert licences.choose_detector("auto", model) == ("yunet", "face detector: yunet (MIT)")


def test_auto_without_yunet_keeps_faces_off_unless_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr("trt_restore.faces.model_files.CACHE", tmp_path / "empty")
    monkeypatch.delenv("TRT_RESTORE_YUNET_MODEL", raising=False)
    name, note = licences.choose_detector("auto", None, tmp_path)
    assert name == "off" and "not for commercial use" in note
    assert licences.choose_detector("auto", None, tmp_path, licence_ok=True)[0] is None  # best available


@pytest.mark.parametrize("detector", ["scrfd", "dlib"])
def test_named_non_commercial_detector_needs_the_flag(detector):
    with pytest.raises(licences.LicenceRefused, match="commercial"):
        licences.choose_detector(detector, None)
    assert licences.choose_detector(detector, None, licence_ok=True)[0] == detector


def test_serve_refuses_scrfd_without_the_flag(tmp_path):
    result = CliRunner().invoke(app, ["serve", "-m", str(tmp_path), "--face-detector", "scrfd"])
    assert result.exit_code == 2 and "--face-model-licence-ok" in result.output


def test_doctor_names_licences_and_tensorrt_origin(tmp_path, monkeypatch):
    system = SimpleNamespace(origin="/usr/lib/python3/dist-packages/tensorrt/__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: system if name == "tensorrt" else None)
    assert doctor.tensorrt_location().startswith("system (JetPack / apt)")
    venv = SimpleNamespace(origin=f"{sysconfig.get_paths()['purelib']}/tensorrt/__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: venv if name == "tensorrt" else None)
    assert doctor.tensorrt_location().startswith("venv")
    lines = "\n".join(licences.describe())
    assert "YuNet" in lines and "MIT" in lines and "non-commercial" in lines and "NOT for commercial use" in lines
