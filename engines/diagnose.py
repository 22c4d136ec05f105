"""`trt-restore doctor`'s TensorRT section: TensorRT version, the GPU (compute capability, free
memory), the cached engines per graph and precision, marked usable or not on this GPU, the
per-layer (tiling) engines counted per precision, and whether the shipped kernel cubins
(engines/kernels/cubins/manifest.json) cover the GPU's compute capability.

Separate from runtime/doctor.py so that the TensorRT and cuda-python probes stay in engines/
(injectable for tests) and the doctor's own code only adds the lines.
"""
from __future__ import annotations

import json
from pathlib import Path

from .cache import EngineCache, runtime_accepts
from .environment import (GpuUnavailable, TensorRTUnavailable, gpu_info, gpu_memory, import_tensorrt,
                          tensorrt_version)
from .kernels.launch import CUBIN_DIR, KernelUnavailable, pick_arch

GIB = 1 << 30


def _label(text: str) -> str:
    return f"{text:24s}"


def tensorrt_lines(engines_root: str | Path, trt=None, cudart=None, device: int = 0,
                   cubin_dir: str | Path = CUBIN_DIR) -> list[str]:
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
    lines += engines_by_graph(engines_root, gpu, str(version))
    lines.append(layer_engines_line(engines_root, gpu, str(version)))
    return lines + [kernels_line(gpu, cubin_dir)]


def _usable(record: dict, gpu, tensorrt_version_text: str) -> bool:
    return (record.get("gpu_name") == gpu.name and record.get("compute_capability") == gpu.compute_capability
            and runtime_accepts(str(record.get("tensorrt_version")), tensorrt_version_text,
                                bool(record.get("version_compatible"))))


def _count(counts: dict[str, list[int]], record: dict, usable: bool) -> None:
    """counts[precision] = [cached, usable here]."""
    pair = counts.setdefault(str(record.get("precision")), [0, 0])
    pair[0] += 1
    pair[1] += usable


def _parts(counts: dict[str, list[int]]) -> str:
    return ", ".join(f"{precision} {usable}/{total}" for precision, (total, usable) in sorted(counts.items()))


def engines_by_graph(engines_root: str | Path, gpu, tensorrt_version_text: str) -> list[str]:
    """One line per graph: each precision with how many plans this GPU and TensorRT can load.
    Per-layer engines are counted apart (layer_engines_line): there are over a hundred."""
    cache = EngineCache(engines_root)
    found: dict[str, dict[str, list[int]]] = {}
    for _, record in cache.entries():
        if record.get("kind") != "layer":
            _count(found.setdefault(str(record.get("graph")), {}), record, _usable(record, gpu, tensorrt_version_text))
    if not found:
        return [_label("engines for this GPU") + f"none in {cache.root} (trt-restore build-engines)"]
    lines = [_label("engines for this GPU") + f"per graph and precision (usable here / cached), {cache.root}"]
    lines += [f"  {graph:22s}{_parts(found[graph])}" for graph in sorted(found)]
    return lines


def layer_engines_line(engines_root: str | Path, gpu, tensorrt_version_text: str) -> str:
    """The per-layer (tiling) engines per precision, usable here / cached, in one line."""
    counts: dict[str, list[int]] = {}
    for _, record in EngineCache(engines_root).entries():
        if record.get("kind") == "layer":
            _count(counts, record, _usable(record, gpu, tensorrt_version_text))
    if not counts:
        return _label("per-layer engines") + "none (tiling with --backend trt needs them: trt-restore build-engines)"
    return _label("per-layer engines") + f"{_parts(counts)} (usable here / cached)"


def kernels_line(gpu, cubin_dir: str | Path = CUBIN_DIR) -> str:
    """Whether the shipped attention / patch-match cubins cover this GPU's compute capability."""
    manifest_path = Path(cubin_dir) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        major, minor = (int(v) for v in gpu.compute_capability.split("."))
        arch = pick_arch(manifest, major, minor)
    except (OSError, ValueError, KeyError) as err:
        return _label("kernels") + f"unreadable cubin manifest {manifest_path}: {err}; {_WITHOUT_KERNELS}"
    except KernelUnavailable:
        shipped = sorted({int(a) for k in manifest["kernels"].values() for a in k["arches"]})
        names = ", ".join(f"sm_{a}" for a in shipped)
        return (_label("kernels") + f"no cubin for sm_{major}{minor} (shipped: {names}): {_WITHOUT_KERNELS}; "
                f"trt-restore build-kernels --arch {major}{minor} (needs Triton)")
    kernels = sum(str(arch) in k["arches"] for k in manifest["kernels"].values())
    runs_on = "" if arch == major * 10 + minor else f" (run on compute capability {gpu.compute_capability})"
    return _label("kernels") + f"sm_{arch} cubins present ({kernels} kernels){runs_on}"


_WITHOUT_KERNELS = ("attention and patch match would have no GPU kernels, so --backend trt refuses to start "
                    "and --backend auto falls back to onnxruntime (CPU)")
