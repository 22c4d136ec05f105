"""Backend options as frozen dataclasses, and the one registry that turns a name into a backend.

Options are plain values decided at the edge (the CLI reads environment variables and flags;
the library never does), so a Restorer built from the same options behaves the same wherever
it runs. Variants are made with dataclasses.replace.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True, kw_only=True)
class OrtOptions:
    """onnxruntime on the CPU: fp32 graphs, or the calibrated Q/DQ models under int8."""

    threads: int | None = None  # intra-op threads (None: every core this process may use)
    precision: str = "fp32"  # fp32 | int8 (fp16 brings nothing on the CPU and maps to fp32)
    spinning: bool = False  # idle intra-op threads spin (faster only on an otherwise idle machine)
    arena: bool = False  # onnxruntime's CPU arena and memory patterns: each session then keeps its largest run's memory
    release_sessions: bool = True  # drop each graph's session after its run: only the running stage's weights resident

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass(frozen=True, kw_only=True)
class TrtOptions:
    """TensorRT engines on a CUDA GPU."""

    precision: str = "fp16"  # which cached engines to load
    engines_dir: Path | None = None  # default: MODELS/engines
    device: int = 0
    layer_fallback: bool = False  # no per-layer engines: tile on onnxruntime (auto) instead of refusing (trt)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def _make_ort(models_dir, options: OrtOptions):
    from .onnxruntime_backend import OrtBackend

    precision = "int8" if options.precision == "int8" else "fp32"
    return OrtBackend(models_dir, threads=options.threads, precision=precision, spinning=options.spinning,
                      arena=options.arena, release_sessions=options.release_sessions)


def _make_trt(models_dir, options: TrtOptions):
    from .tensorrt_backend import TrtBackend

    return TrtBackend(models_dir, precision=options.precision, engines_dir=options.engines_dir, device=options.device,
                      layer_fallback=options.layer_fallback)


# name -> (options type, factory(models_dir, options)); "auto" is resolved by create_backend
REGISTRY = {"ort": (OrtOptions, _make_ort), "trt": (TrtOptions, _make_trt)}
