"""TensorRT's logger routed into `logging`, and the doctor's TensorRT section (stand-ins)."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from engines_support import H100, ORIN, FakeCudart, FakeTrt
from trt_restore.engines.cache import EngineCache, EngineKey
from trt_restore.engines.diagnose import kernels_line, tensorrt_lines
from trt_restore.engines.environment import GpuInfo
from trt_restore.engines.kernels.launch import CUBIN_DIR
from trt_restore.engines.profiles import graph_profile, layer_profile
from trt_restore.engines.trt_logging import python_level, trt_logger


class _Severity:
    def __init__(self, name):
        self.name = name


def test_tensorrt_severities_map_onto_logging_levels(caplog):
    class ILogger:
        def __init__(self):
            pass

    trt = SimpleNamespace(ILogger=ILogger)
    logger = trt_logger(trt)
    assert trt_logger(trt) is logger  # one per module: TensorRT keeps a raw pointer to it
    with caplog.at_level(logging.DEBUG, logger="trt_restore.tensorrt"):
        for name in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"):
            logger.log(_Severity(name), f"{name} message")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.CRITICAL, "INTERNAL_ERROR message"), (logging.ERROR, "ERROR message"),
        (logging.WARNING, "WARNING message"), (logging.INFO, "INFO message"), (logging.DEBUG, "VERBOSE message")]
    assert python_level("Severity.WARNING") == logging.WARNING
    assert python_level(_Severity("SOMETHING_NEW")) == logging.INFO
    # modules without ILogger (stand-ins, old bindings) keep their stock logger
    assert trt_logger(FakeTrt("10.3.0")).severity == "WARNING"


class _Cudart(FakeCudart):
    def cudaMemGetInfo(self):
        return (self.cudaSetDevice(0)[0], 60 << 30, 80 << 30)


def _store(cache, graph, precision, gpu, version, extra=None):
    profile = layer_profile(graph, 1024, 16) if extra else graph_profile(graph, (512, 512), (256, 256))
    key = EngineKey(graph, "a" * 64, precision, profile, gpu.name, gpu.compute_capability, version)
    cache.store(key, f"{graph}{precision}{gpu.name}{version}".encode(), extra=extra)


def test_doctor_shows_tensorrt_gpu_memory_and_engines_per_graph(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    _store(cache, "detection", "fp16", H100, "10.3.0")
    _store(cache, "detection", "int8", H100, "10.3.0")
    _store(cache, "detection", "fp16", ORIN, "10.3.0")  # another GPU: cached, not usable here
    _store(cache, "mapping_quality", "fp16", H100, "10.4.0")  # another TensorRT
    lines = tensorrt_lines(tmp_path / "engines", trt=FakeTrt("10.3.0"), cudart=_Cudart())
    text = "\n".join(lines)
    assert lines[0].split() == ["TensorRT", "TensorRT", "10.3.0"]
    assert "NVIDIA H100 80GB HBM3, compute capability 9.0, 60.0 GiB free of 80.0 GiB" in text
    assert any(line.split() == ["detection", "fp16", "1/2,", "int8", "1/1"] for line in lines), text
    assert any(line.split() == ["mapping_quality", "fp16", "0/1"] for line in lines), text
    # no GPU: one line saying so, after the TensorRT version
    lines = tensorrt_lines(tmp_path / "engines", trt=FakeTrt("10.3.0"), cudart=FakeCudart(device_count=0))
    assert len(lines) == 2 and "not usable: no CUDA GPU found" in lines[1]


def test_doctor_says_why_there_is_no_tensorrt(tmp_path):
    from trt_restore.doctor import report

    text = report(tmp_path)
    assert "TensorRT                " in text  # either a version or "not available: <why>"


def test_doctor_counts_the_per_layer_engines_per_precision_apart_from_the_graphs(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    _store(cache, "detection", "fp16", H100, "10.3.0")
    layer = {"kind": "layer", "strip_rows": 16}
    for name in ("VAE_A_quality/encoder.1", "VAE_A_quality/encoder.4", "mapping_quality/model.0"):
        _store(cache, name, "fp16", H100, "10.3.0", extra=layer)
    _store(cache, "mapping_quality/model.0", "int8", H100, "10.3.0", extra=layer)
    _store(cache, "VAE_A_quality/encoder.1", "fp16", ORIN, "10.3.0", extra=layer)  # another GPU
    lines = tensorrt_lines(tmp_path / "engines", trt=FakeTrt("10.3.0"), cudart=_Cudart())
    text = "\n".join(lines)
    assert any(line.split() == ["detection", "fp16", "1/1"] for line in lines), text
    assert "encoder.1" not in text and "model.0" not in text  # not one line per layer
    (line,) = [line for line in lines if line.startswith("per-layer engines")]
    assert line.split()[2:] == ["fp16", "3/4,", "int8", "1/1", "(usable", "here", "/", "cached)"]
    empty = tensorrt_lines(tmp_path / "none", trt=FakeTrt("10.3.0"), cudart=_Cudart())
    assert any(line.startswith("per-layer engines") and "none" in line and "build-engines" in line for line in empty)


def _shipped_kernels(arch: int) -> int:
    manifest = json.loads((CUBIN_DIR / "manifest.json").read_text())
    return sum(str(arch) in kernel["arches"] for kernel in manifest["kernels"].values())


def test_doctor_says_whether_the_shipped_cubins_cover_the_gpu(tmp_path):
    lines = tensorrt_lines(tmp_path / "engines", trt=FakeTrt("10.3.0"), cudart=_Cudart())  # the H100 stand-in
    assert lines[-1].split() == ["kernels", "sm_90", "cubins", "present", f"({_shipped_kernels(90)}", "kernels)"]
    assert _shipped_kernels(90) > 10
    assert kernels_line(ORIN).endswith(f"sm_87 cubins present ({_shipped_kernels(87)} kernels)")
    turing = kernels_line(GpuInfo(0, "Tesla T4", "7.5", 16 << 30))
    assert "no cubin for sm_75 (shipped: sm_80, sm_86, sm_87, sm_89, sm_90)" in turing
    assert "--backend trt refuses to start" in turing and "falls back to onnxruntime" in turing
    assert "build-kernels --arch 75" in turing and "\n" not in turing
    # an older cubin of the same major runs on a newer minor, said so
    manifest = {"kernels": {"compact": {"arches": {"80": {}}}, "patch_margin": {"arches": {"80": {}, "90": {}}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    ampere = kernels_line(GpuInfo(0, "RTX 3090", "8.6", 24 << 30), tmp_path)
    assert ampere.endswith("sm_80 cubins present (2 kernels) (run on compute capability 8.6)")
    missing = kernels_line(H100, tmp_path / "nowhere")
    assert "unreadable cubin manifest" in missing and "refuses to start" in missing
