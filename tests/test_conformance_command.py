"""`trt-restore conformance`: exit codes, the table, unknown kinds and a wrong vector.

Runs the real command on a small reference root made of links to the reference files, with
the session's exported graphs (--models) so nothing is exported twice.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import reference_root
from trt_restore.cli import app

SMALL = {"vectors": ["vae_a_roundtrip_64x80.npz", "quality_96x128.npz"], "faces": ["face_align_old_a.npz"]}


def _small_root(tmp_path: Path) -> Path:
    root = tmp_path / "reference"
    for folder, names in SMALL.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            source = reference_root() / folder / name
            if not source.is_file():
                pytest.skip(f"{source} not in this reference root")
            os.symlink(source, root / folder / name)
    return root


@pytest.fixture()
def work_dir(tmp_path, synthetic_release, exported_models):
    """A work folder whose weights are the session's synthetic release (the graphs' source)."""
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(synthetic_release.root, work / "weights")
    return work


def _run(*args: str):
    return CliRunner().invoke(app, ["conformance", *args], catch_exceptions=False)


def test_passes_on_every_backend_here(tmp_path, work_dir, exported_models):
    root = _small_root(tmp_path)
    report = tmp_path / "report.json"
    result = _run("--reference", str(root), "--backend", "all", "--work-dir", str(work_dir),
                  "--models", str(exported_models), "--threads", "2", "--json", str(report))
    print(result.output)
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["rows"]
    backends = {r["backend"] for r in rows if r["status"] == "ok"}
    assert {"pytorch", "ort", "ort-tiled", "numpy"} <= backends
    assert json.loads(report.read_text())["skipped"].get("trt")  # no TensorRT here, and it says why
    assert any(r["status"] == "n/a" and r["tensor"] == "output" and r["kind"] == "vae_roundtrip" for r in rows)
    assert "PASSED" in result.output


def test_a_wrong_vector_fails_with_exit_1(tmp_path, work_dir, exported_models):
    root = _small_root(tmp_path)
    target = root / "vectors" / "quality_96x128.npz"
    with np.load(target.resolve()) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mapped"] = arrays["mapped"] + np.float32(1e-2)  # the runtime cannot match this any more
    target.unlink()
    np.savez(target, **arrays)
    result = _run("--reference", str(root), "--backend", "ort", "--work-dir", str(work_dir),
                  "--models", str(exported_models), "--threads", "2")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "FAILED" in result.output


def test_unknown_kind_is_a_failure(tmp_path, work_dir, exported_models):
    root = _small_root(tmp_path)
    np.savez(root / "vectors" / "mystery.npz", meta=json.dumps({"kind": "mystery", "outputs": ["x"]}), x=np.zeros(1))
    result = _run("--reference", str(root), "--backend", "ort", "--work-dir", str(work_dir),
                  "--models", str(exported_models), "--threads", "2")
    assert result.exit_code == 1 and "mystery" in result.output


def test_usage_errors_exit_2(tmp_path, work_dir, exported_models):
    assert _run("--reference", str(tmp_path / "absent")).exit_code == 2
    (tmp_path / "empty").mkdir()
    assert _run("--reference", str(tmp_path / "empty")).exit_code == 2
    root = _small_root(tmp_path)
    assert _run("--reference", str(root), "--backend", "onnx").exit_code == 2
    assert _run("--reference", str(root), "--precision", "fp8").exit_code == 2
    # TensorRT asked for by name on a machine without it: a usage error naming the backend
    result = _run("--reference", str(root), "--backend", "trt", "--work-dir", str(work_dir),
                  "--models", str(exported_models))
    assert result.exit_code == 2 and "trt" in result.output


def test_models_from_other_weights_are_refused(tmp_path, exported_models):
    """--models must come from the reference's synthetic weights, or the check means nothing."""
    root = _small_root(tmp_path)
    work = tmp_path / "other"
    (work / "weights").mkdir(parents=True)
    from trt_restore.export.synthetic_weights import write_synthetic_checkpoint

    path = write_synthetic_checkpoint(work / "weights", "VAE_A_quality")
    import torch

    state = torch.load(path)
    state["encoder.1.bias"] += 1.0
    torch.save(state, path)
    result = _run("--reference", str(root), "--backend", "ort", "--work-dir", str(work),
                  "--models", str(exported_models))
    assert result.exit_code == 2 and "synthetic" in result.output
