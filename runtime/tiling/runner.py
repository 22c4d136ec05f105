"""Graph segments run as layer programs on strips, values kept as Frames (GlobalRestorer hook)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..global_restoration import GlobalRestorer
from .executor import ExecutorConfig, Frame, TiledExecutor
from .programs import PROGRAMS

OUTPUTS = {
    "vae_a_quality_encoder": ("latent",),
    "vae_b_quality_decoder": ("output",),
    "vae_b_scratch_decoder": ("output",),
    "mapping_quality": ("mapped",),
    "mapping_scratch_head": ("x", "theta", "phi", "g"),
    "mapping_scratch_tail": ("mapped",),
    "mapping_hr_head": ("z", "x"),
    "mapping_hr_step1": ("z_next", "x_next"),
    "mapping_hr_step2": ("z_next", "x_next"),
    "mapping_hr_tail": ("mapped",),
}
DECODERS = ("vae_b_quality_decoder", "vae_b_scratch_decoder")


class FrameRunner:
    """Same interface as ArrayRunner, executing strip by strip."""

    def __init__(self, backend, config: ExecutorConfig, chunk_bytes: int | None = None):
        if backend.max_strip_rows:  # the backend's engines take no taller strip (TensorRT profiles)
            cap = min(config.max_strip_rows or backend.max_strip_rows, backend.max_strip_rows)
            config = replace(config, max_strip_rows=cap)
        device_bytes = backend.max_strip_bytes  # read once per photo: free memory changes
        if device_bytes and device_bytes < config.strip_bytes:
            config = replace(config, strip_bytes=device_bytes)
        self.executor = TiledExecutor(backend.run_layer, config, strips=backend.strip_ops(config))
        self.backend = backend
        self.chunk_bytes = chunk_bytes
        self._owned: list[Frame] = []

    def run(self, graph: str, inputs: dict) -> dict:
        frames = dict(inputs)
        self.executor.run(PROGRAMS[graph](), frames)
        outputs = {name: frames[name] for name in OUTPUTS[graph]}
        keep = set(map(id, outputs.values())) | set(map(id, inputs.values()))
        for frame in frames.values():
            if id(frame) not in keep:
                frame.close()
        if graph in DECODERS:  # the decoder ends in tanh, applied on the (3-channel) result
            frame = outputs["output"]
            outputs["output"] = np.tanh(self.executor.array_from_frame(frame))
            frame.close()
        self._owned.extend(f for f in outputs.values() if isinstance(f, Frame))
        return outputs

    @staticmethod
    def shape(value) -> tuple[int, int, int]:
        return value.shape if isinstance(value, Frame) else tuple(value.shape[1:])

    def to_array(self, value) -> np.ndarray:
        return self.executor.array_from_frame(value) if isinstance(value, Frame) else value

    def from_array(self, array: np.ndarray) -> Frame:
        frame = self.executor.frame_from_array(array)
        self._owned.append(frame)
        return frame

    def patch_match(self, x: Frame, hole: np.ndarray, size: int) -> Frame:
        target = self.executor.new_frame(*x.shape)
        self.backend.patch_match_frames(x, target, hole, size)  # host-streamed, or the GPU kernels
        self._owned.append(target)
        return target

    def masked_attention(self, theta: Frame, phi: Frame, g: Frame, key_valid: np.ndarray) -> Frame:
        target = self.executor.new_frame(*theta.shape)
        self.backend.masked_attention_frames(theta, phi, g, key_valid, target, self.chunk_bytes)  # or GPU kernels
        self._owned.append(target)
        return target

    @staticmethod
    def release(value) -> None:
        if isinstance(value, Frame):
            value.close()

    def close(self) -> None:
        for frame in self._owned:
            frame.close()
        self._owned.clear()
        self.executor.strips.close()


class TiledGlobalRestorer(GlobalRestorer):
    """GlobalRestorer whose segments run strip by strip with exact InstanceNorm statistics."""

    def __init__(self, backend, mode: str = "quality", config: ExecutorConfig | None = None, **kwargs):
        super().__init__(backend, mode, **kwargs)
        if not backend.runs_layers:
            from ..backends import BackendUnsupported

            why = f": {backend.layers_reason}" if backend.layers_reason else ""
            raise BackendUnsupported(f"backend {backend.name} cannot run per-layer graphs (tiling){why}")
        self.config = config or ExecutorConfig()

    def runner(self):
        return FrameRunner(self.backend, self.config, self.chunk_bytes)
