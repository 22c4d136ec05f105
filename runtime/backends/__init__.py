"""Inference backends: run a named graph segment on numpy inputs.

The pipeline only talks to this interface, so the onnxruntime (CPU) and TensorRT (CUDA)
backends are interchangeable.
"""
from __future__ import annotations

import os

from .base import Backend, BackendUnsupported

__all__ = ["Backend", "BackendUnsupported", "create_backend"]


def create_backend(kind: str, models_dir, threads: int | None = None, precision: str | None = None) -> Backend:
    """`ort` (onnxruntime, CPU), `trt` (TensorRT engines on a CUDA GPU) or `auto` (TensorRT when
    its module, a GPU and cached engines for this GPU are present, else onnxruntime; the
    returned backend's `fallback_reason` then says in one line why TensorRT was not used).
    precision: which engines the TensorRT backend loads (default $TRT_RESTORE_PRECISION or fp16)."""
    if kind not in ("ort", "auto", "trt"):
        raise ValueError(f"unknown backend {kind!r} (choose auto, ort or trt)")
    precision = precision or os.environ.get("TRT_RESTORE_PRECISION", "fp16")
    if kind in ("trt", "auto"):
        from .tensorrt_backend import TrtBackend, TrtBackendUnavailable

        try:
            return TrtBackend(models_dir, precision=precision)
        except TrtBackendUnavailable as err:
            if kind == "trt":
                raise RuntimeError(f"TensorRT backend unavailable: {err}") from None
            reason = str(err)
    from .onnxruntime_backend import OrtBackend

    # onnxruntime runs fp32, or the calibrated Q/DQ models for int8 (fp16 brings nothing on the CPU)
    backend = OrtBackend(models_dir, threads=threads, precision="int8" if precision == "int8" else "fp32")
    if kind == "auto":
        backend.fallback_reason = f"TensorRT not used: {reason}; using onnxruntime (CPU)"
    return backend
