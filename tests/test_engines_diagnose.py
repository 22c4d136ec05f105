"""TensorRT's logger routed into `logging`, and the doctor's TensorRT section (stand-ins)."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from engines_support import H100, ORIN, FakeCudart, FakeTrt
from trt_restore.engines.cache import EngineCache, EngineKey
from trt_restore.engines.diagnose import tensorrt_lines
from trt_restore.engines.profiles import graph_profile
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


def _store(cache, graph, precision, gpu, version):
    key = EngineKey(graph, "a" * 64, precision, graph_profile(graph, (512, 512), (256, 256)), gpu.name,
                    gpu.compute_capability, version)
    cache.store(key, f"{graph}{precision}{gpu.name}{version}".encode())


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
