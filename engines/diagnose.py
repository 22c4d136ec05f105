"""`trt-restore doctor`'s TensorRT section: TensorRT version, the GPU (compute capability, free
memory) and the cached engines per graph and precision, marked usable or not on this GPU.

Separate from runtime/doctor.py so that the TensorRT and cuda-python probes stay in engines/
(injectable for tests) and the doctor's own code only adds the lines.
"""
from __future__ import annotations

from pathlib import Path

from .cache import EngineCache, runtime_accepts
from .environment import (GpuUnavailable, TensorRTUnavailable, gpu_info, gpu_memory, import_tensorrt,
                          tensorrt_version)

GIB = 1 << 30


def _label(text: str) -> str:
    return f"{text:24s}"


def tensorrt_lines(engines_root: str | Path, trt=None, cudart=None, device: int = 0) -> list[str]:
    """Lines for the doctor; one line saying why when TensorRT or a GPU is missing."""
    try:
        trt = trt or import_tensorrt(require_builder=False)
    except TensorRTUnavailable as err:
        return [_label("TensorRT") + f"not available: {err}"]
    version = tensorrt_version(trt)
    lines = [_label("TensorRT") + version.label]
    try:
        gpu = gpu_info(device, cudart=cudart)
        free, total = gpu_memory(device, cudart=cudart)
    except (GpuUnavailable, AttributeError) as err:
        return lines + [_label("CUDA device") + f"not usable: {err}"]
    lines.append(_label(f"CUDA device {device}") + f"{gpu.name}, compute capability {gpu.compute_capability}, "
                 f"{free / GIB:.1f} GiB free of {total / GIB:.1f} GiB")
    return lines + engines_by_graph(engines_root, gpu, str(version))


def engines_by_graph(engines_root: str | Path, gpu, tensorrt_version_text: str) -> list[str]:
    """One line per graph: each precision with how many plans this GPU and TensorRT can load."""
    cache = EngineCache(engines_root)
    found: dict[str, dict[str, list[int]]] = {}
    for _, record in cache.entries():
        usable = (record.get("gpu_name") == gpu.name and record.get("compute_capability") == gpu.compute_capability
                  and runtime_accepts(str(record.get("tensorrt_version")), tensorrt_version_text,
                                      bool(record.get("version_compatible"))))
        counts = found.setdefault(str(record.get("graph")), {}).setdefault(str(record.get("precision")), [0, 0])
        counts[0] += 1
        counts[1] += usable
    if not found:
        return [_label("engines for this GPU") + f"none in {cache.root} (trt-restore build-engines)"]
    lines = [_label("engines for this GPU") + f"per graph and precision (usable here / cached), {cache.root}"]
    for graph in sorted(found):
        parts = [f"{precision} {usable}/{total}" for precision, (total, usable) in sorted(found[graph].items())]
        lines.append(f"  {graph:22s}{', '.join(parts)}")
    return lines
