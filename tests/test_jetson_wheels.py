"""A release must install on a Jetson: the runtime's dependency set (with the serve and trt
extras) resolves from PyPI to binary wheels for manylinux_2_35_aarch64 / CPython 3.10, and
never to PyPI's `tensorrt` placeholder (JetPack brings TensorRT). Needs the registry."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "jetson" / "resolve_wheels.py"


def test_board_markers_drop_the_tensorrt_placeholder():
    import runpy

    module = runpy.run_path(str(SCRIPT))
    reqs = module["requirements"](["serve", "trt"])
    names = {r.split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in reqs}
    assert "tensorrt" not in names and "cuda-python" in names and "fastapi" in names
    assert any(r.startswith("cuda-python") and "<13" in r for r in reqs)  # JetPack 6 is CUDA 12.6


@pytest.mark.network
def test_dependency_set_resolves_for_jetson():
    done = subprocess.run([sys.executable, str(SCRIPT), "--json"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr or done.stdout
    wheels = json.loads(done.stdout)["wheels"]
    names = {w["name"].lower() for w in wheels}
    assert {"numpy", "onnxruntime", "opencv-python-headless", "pillow", "tifffile", "fastapi"} <= names
    assert "tensorrt" not in names
    for wheel in wheels:
        platform = wheel["tag"].split("-")[-1]
        assert platform == "any" or "aarch64" in platform, wheel
        assert wheel["tag"].split("-")[0] in ("py3", "py2.py3", "cp310") or "abi3" in wheel["tag"], wheel


def test_install_script_dry_run(tmp_path):
    """The Jetson install makes a venv that sees JetPack's TensorRT, then installs serve+trt."""
    script = SCRIPT.with_name("install.sh")
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PREFIX": str(tmp_path / "opt"),
                               "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert "-m venv --system-site-packages" in done.stdout and "[serve,trt]" in done.stdout
    assert "build-engines" in done.stdout and "kiosk install" in done.stdout
    assert not (tmp_path / "opt").exists()  # a dry run changes nothing
