"""Inference backends: run a named graph segment on numpy inputs.

The pipeline only talks to this interface, so the onnxruntime (CPU) and TensorRT (CUDA)
backends are interchangeable.
"""
from __future__ import annotations

import dataclasses

from .base import Backend, BackendUnavailable, BackendUnsupported
from .options import REGISTRY, OrtOptions, TrtOptions

__all__ = ["Backend", "BackendUnavailable", "BackendUnsupported", "OrtOptions", "TrtOptions", "REGISTRY", "create_backend"]


def create_backend(kind: str, models_dir, threads: int | None = None, precision: str | None = None,
                   ort: OrtOptions | None = None, trt: TrtOptions | None = None) -> Backend:
    """`ort` (onnxruntime, CPU), `trt` (TensorRT engines on a CUDA GPU) or `auto` (TensorRT when
    its module, a GPU, its kernels and cached engines for this GPU are present, else onnxruntime;
    the returned backend's `fallback_reason` then says in one line why TensorRT was not used, or,
    on TensorRT without per-layer engines, that tiling runs its layers on onnxruntime).

    `ort`/`trt` are the full option sets; `threads` and `precision` are shorthands that fill
    them (precision None: fp16 engines under TensorRT, fp32 on onnxruntime)."""
    if kind not in ("ort", "auto", "trt"):
        raise ValueError(f"unknown backend {kind!r} (choose auto, ort or trt)")
    ort = ort or OrtOptions(threads=threads, precision=precision or "fp32")
    trt = trt or TrtOptions(precision=precision or "fp16")
    if kind in ("trt", "auto"):
        from .tensorrt_backend import TrtBackendUnavailable

        try:
            options = dataclasses.replace(trt, layer_fallback=True) if kind == "auto" else trt
            return REGISTRY["trt"][1](models_dir, options)
        except TrtBackendUnavailable as err:
            if kind == "trt":
                raise BackendUnavailable(f"TensorRT backend unavailable: {err}") from None
            reason = str(err)
    backend = REGISTRY["ort"][1](models_dir, ort)
    if kind == "auto":
        backend.fallback_reason = f"TensorRT not used: {reason}; using onnxruntime (CPU)"
    return backend
