"""The GPU check's harness, run on the CPU with stand-ins for the kernels (its flow, the
reference-vector plumbing and the JSON report); the kernels themselves need a GPU."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _harness():
    spec = importlib.util.spec_from_file_location("gpu_harness", REPO / "benchmarks" / "gpu_harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_harness_flow_in_emulation(reference, tmp_path):
    harness = _harness()
    code = harness.main(["--emulate", "--quick", "--reference", str(reference), "--out", str(tmp_path),
                         "--skip-timings"])
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, result["summary"]
    names = [c["name"] for c in result["checks"]]
    assert any(n.startswith("attention no_valid_key") for n in names)
    assert any(n.startswith("patch_match") for n in names)
    assert any(n.startswith("patch_match margins") for n in names)
    vector_checks = [n for n in names if n.startswith("vector ")]
    assert any("nl_in -> nl_out io=fp32" in n for n in vector_checks)  # the scratch vectors' nl_in path
    assert any("mapped with kernel patch match" in n for n in vector_checks)  # the HR vectors
    assert result["info"]["emulated"] is True and result["summary"]["failed"] == 0


def test_harness_timings_in_emulation():
    harness = _harness()
    harness.bootstrap_trt_restore()
    ops, report = harness.EmulatedOps(), harness.Report()
    harness.attention_timings(ops, report, [256, 512], repeats=1, device_name="NVIDIA H100 80GB HBM3")
    harness.patch_timings(ops, report, side=16, repeats=1)
    assert not report.checks  # no errors
    attention = [t for t in report.timings if "positions" in t]
    assert {t["positions"] for t in attention} == {256, 512}
    fp16 = [t for t in attention if t["compute"] == "fp16"]
    assert all(t["tflops"] > 0 and "fraction_of_dense_fp16_peak" in t for t in fp16)
    assert sum(t["name"].startswith("patch_match") for t in report.timings) == 3


def test_harness_reports_failures(tmp_path, monkeypatch):
    harness = _harness()
    harness.bootstrap_trt_restore()
    ops = harness.EmulatedOps()
    report = harness.Report()
    broken = ops.attention

    def wrong(theta, phi, g, valid, compute, config=0):
        return broken(theta, phi, g, valid, compute, config) * 1.01

    ops.attention = wrong
    harness.attention_checks(ops, report, quick=True)
    assert any(not c["ok"] for c in report.checks if "one_valid_key" not in c["name"])
    report = harness.Report()
    folded = ops.patch_match

    def margins_kept(x, hole, size):  # composes the whole patches but leaves the margins at x
        hh, ww = x.shape[2] // size * size, x.shape[3] // size * size
        out = x.clone()
        out[:, :, :hh, :ww] = folded(x[:, :, :hh, :ww].contiguous(), hole[:, :, :hh, :ww].contiguous(), size)
        return out

    ops.patch_match = margins_kept
    harness.margin_checks(ops, report, quick=True)
    assert any(not c["ok"] for c in report.checks if "holes=all" in c["name"])
    assert all(c["ok"] for c in report.checks if "holes=none" in c["name"])
    assert harness.peak_for("NVIDIA H100 80GB HBM3") == (989.4, "H100")
    assert harness.peak_for("NVIDIA H100 PCIe")[0] == 756.0
    assert harness.peak_for("Some GPU") == (None, None)


def test_gpu_check_script_is_valid_bash_and_fails_cleanly_without_gpu(tmp_path):
    script = REPO / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "KERNEL_LIB": "/nonexistent.so", "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(script), "../shared/reference", str(tmp_path / "out")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (tmp_path / "out" / "gpu_check.log").is_file()
    if importlib.util.find_spec("tensorrt") is None:  # the TensorRT part says plainly that it did not run
        assert "TensorRT end to end: skipped, " in proc.stdout and "cannot import tensorrt" in proc.stdout
        assert not list((tmp_path / "out").glob("*.json"))


def _end_to_end():
    spec = importlib.util.spec_from_file_location("trt_end_to_end", REPO / "benchmarks" / "trt_end_to_end.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tensorrt_end_to_end_steps_and_record(tmp_path):
    e2e = _end_to_end()
    named = dict(e2e.steps(tmp_path, tmp_path / "photo.png"))
    assert list(named) == ["synthetic-weights", "export", "build-engines fp16",
                           "restore 12 MP quality --backend trt --tile on", "transfers of a tiled 12 MP restore"]
    transfers = named["transfers of a tiled 12 MP restore"]
    assert transfers[transfers.index("--measure-transfers") + 1:] == [str(tmp_path / "models"),
                                                                      str(tmp_path / "photo.png"),
                                                                      str(tmp_path / e2e.TRANSFERS)]
    assert named["build-engines fp16"][-2:] == ["--precision", "fp16"]
    restore = named["restore 12 MP quality --backend trt --tile on"]
    assert restore[restore.index("--backend") + 1] == "trt" and restore[restore.index("--tile") + 1] == "on"
    assert "--scratch" not in restore and "--hr" not in restore  # quality mode
    touch = "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"
    record = e2e.timed("allocate", [sys.executable, "-c", touch])
    assert record["exit_code"] == 0 and record["peak_rss_mib"] >= 300 and record["seconds"] > 0
    assert e2e.timed("fail", [sys.executable, "-c", "raise SystemExit(3)"])["exit_code"] == 3
    alone = e2e.record(tmp_path, {"ok": True})  # no harness JSON: a file of its own
    assert alone.name == "gpu_check_tensorrt.json"
    (tmp_path / "gpu_check.json").write_text(json.dumps({"summary": {"failed": 0}}))
    merged = json.loads(e2e.record(tmp_path, {"ok": False}).read_text())
    assert merged == {"summary": {"failed": 0}, "tensorrt_end_to_end": {"ok": False}}
    e2e.write_photo(tmp_path / "small.png", 64, 48)
    import cv2

    assert cv2.imread(str(tmp_path / "small.png")).shape == (48, 64, 3)
