"""Inference backends: run a named graph segment on numpy inputs.

The pipeline only talks to this interface, so the onnxruntime (CPU) and TensorRT (CUDA)
backends are interchangeable.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` on float32 NCHW inputs; returns its outputs by name."""

    def describe(self) -> str:
        """One line for logs and `doctor`."""


def create_backend(kind: str, models_dir, threads: int | None = None) -> Backend:
    """`ort` or `auto` (TensorRT is not available yet, so `auto` means onnxruntime)."""
    if kind in ("ort", "auto"):
        from .onnxruntime_backend import OrtBackend

        backend = OrtBackend(models_dir, threads=threads)
        if kind == "auto":
            backend.fallback_reason = "TensorRT backend not available in this version; using onnxruntime (CPU)"
        return backend
    if kind == "trt":
        raise RuntimeError("the TensorRT backend is not implemented yet; use --backend ort")
    raise ValueError(f"unknown backend {kind!r} (choose auto, ort or trt)")
