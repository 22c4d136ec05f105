"""The one contract every inference backend fulfils, with the CPU defaults.

The pipeline calls exactly these members and nothing else, so a backend that lacks a piece
fails where it is defined, not with a runtime surprise on the one machine nobody here has.
The attention steps default to the runtime's numpy implementations (the original's
semantics, memory linear in N); a GPU backend overrides them with its kernels.
"""
from __future__ import annotations

import numpy as np

from .. import attention


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine at all (no TensorRT, no GPU, no engines): the
    caller may fall back or skip, unlike an error of a backend that ran."""


class BackendUnsupported(RuntimeError):
    """A backend was asked for something it cannot do (e.g. per-layer graphs for tiling)."""


class Backend:
    """run / run_layer / strip_ops / array_runner / masked_attention / masked_attention_frames /
    patch_match / patch_match_frames / store / describe / fallback_reason / close."""

    name: str = "backend"
    store = None  # ModelStore of the models folder, or None for stand-ins that have none
    fallback_reason: str | None = None  # set by create_backend("auto") when TensorRT was not used
    runs_layers: bool = False  # per-layer graphs available, so the tiled executor can use it
    layers_reason: str | None = None  # why not (one line), for the tiled runner's error
    max_strip_rows: int | None = None  # tallest strip (output rows) run_layer accepts; None: any
    max_strip_bytes: int | None = None  # strip budget of the device (TensorRT: from its free memory)

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` on float32 NCHW inputs; returns its outputs by name."""
        raise NotImplementedError(f"{type(self).__name__}.run")

    def run_layer(self, layer: str, x: np.ndarray) -> np.ndarray:
        """One per-layer graph of the tiled executor on one strip (runs_layers backends)."""
        raise BackendUnsupported(f"backend {self.name} cannot run per-layer graphs (tiling)")

    def strip_ops(self, config):
        """Where the tiled executor keeps its maps and how it runs a layer on a strip: host
        memory and `run_layer` by default (runtime/tiling/executor.py HostStrips); TensorRT keeps
        them on the device."""
        from ..tiling.executor import HostStrips

        return HostStrips(self.run_layer, config)

    def masked_attention(self, theta: np.ndarray, phi: np.ndarray, g: np.ndarray, key_valid: np.ndarray,
                         chunk_bytes: int | None = None) -> np.ndarray:
        """The partial nonlocal attention, (C, N) arrays in and out (runtime/attention.py)."""
        return attention.masked_attention(theta, phi, g, key_valid, chunk_bytes or attention.DEFAULT_CHUNK_BYTES)

    def masked_attention_frames(self, theta, phi, g, key_valid: np.ndarray, target,
                                chunk_bytes: int | None = None) -> None:
        """The partial nonlocal attention on tiled maps (runtime/tiling Frames): theta/phi/g read
        whole, the attended map written to `target` (a GPU backend keeps them on the device)."""
        channels, height, width = theta.shape
        flat = [frame.read(0, height).reshape(channels, -1) for frame in (theta, phi, g)]
        target.store.write(0, self.masked_attention(*flat, key_valid, chunk_bytes).reshape(channels, height, width))

    def array_runner(self, chunk_bytes: int):
        """How untiled graph segments pass values: host arrays by default (global_restoration
        ArrayRunner); TensorRT chains them on the device."""
        from ..global_restoration import ArrayRunner

        return ArrayRunner(self, chunk_bytes)

    def patch_match(self, x: np.ndarray, hole: np.ndarray, size: int, chunk_bytes: int | None = None) -> np.ndarray:
        """The HR patch match, x (C, H, W), hole (H, W) (runtime/attention.py)."""
        return attention.patch_match(x, hole, size, chunk_bytes or attention.DEFAULT_CHUNK_BYTES)

    def patch_match_frames(self, source, target, hole: np.ndarray, size: int) -> None:
        """The HR patch match on tiled maps (runtime/tiling Frames): `source` read, `target` written.
        The default streams bands of patch rows on the host (memory O(hole patches + band)); a GPU
        backend overrides it with its kernels."""
        from ..tiling.patch_match import patch_match_frames

        patch_match_frames(source, target, hole, size)

    def describe(self) -> str:
        """One line for logs and `doctor`."""
        return self.name

    def close(self) -> None:
        """Release sessions, engines and device buffers (a no-op by default)."""
