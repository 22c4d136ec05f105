"""Stage 1: global restoration (quality / scratch / HR) on any backend.

Graph segments run on the backend through a runner, which decides where the values between
them live: host arrays (ArrayRunner), tiled maps (runtime/tiling/runner.py), or device arrays
(the TensorRT backend's array_runner). The attention between them runs on the backend
(numpy with memory linear in the number of latent positions by default, runtime/attention.py;
the GPU kernels under TensorRT). The host is needed for the scratch mask (detection,
thresholding, painting, the valid/hole maps) and for the results.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import attention
from .modes import ENCODER, MODES, mode_spec
from .preprocess import dilate_mask, mask_to_network_input, output_to_u8, paint_holes, resize_to_multiple, to_network_input
from .scratch_detection import detect_scratches

__all__ = ["MODES", "GlobalRestorer", "GlobalResult", "ArrayRunner", "prepare_user_mask"]


@dataclass
class GlobalResult:
    restored: np.ndarray  # HxWx3 uint8
    mask: np.ndarray | None = None  # HxW uint8 0/255 (scratch modes)
    painted: np.ndarray | None = None  # hole-painted input (scratch modes)
    tensors: dict = field(default_factory=dict)  # latent, mapped, output
    timings: dict = field(default_factory=dict)  # seconds per stage


def prepare_user_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A user mask (any nonzero = scratch) resized like the photo (nearest) to 0/255 uint8."""
    import cv2

    if mask.ndim == 3:
        mask = mask.max(axis=2)
    mask = (mask > 0).astype(np.uint8) * 255
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask


class GlobalRestorer:
    """Runs one mode's graph segments on a backend; stateless between photos."""

    def __init__(self, backend, mode: str = "quality", chunk_bytes: int = attention.DEFAULT_CHUNK_BYTES):
        self.spec = mode_spec(mode)
        self.backend = backend
        self.mode = mode
        self.chunk_bytes = chunk_bytes

    def restore(self, image_u8: np.ndarray, stretch: bool = False, mask: np.ndarray | None = None,
                on_stage=None) -> GlobalResult:
        """Restore one HxWx3 uint8 photo. In the scratch modes `mask` (HxW uint8, nonzero =
        scratch, same size as the photo) replaces the detector's mask. `on_stage(name)` is called
        as each stage ends (detection, encode, mapping, attention, decode): progress for long photos."""
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - clock
            clock = now
            if on_stage is not None:
                on_stage(name)

        image = resize_to_multiple(image_u8, self.spec.side_multiple, self.spec.resize_method)
        user_mask, mask, painted = mask, None, None
        if self.spec.detects_scratches:
            mask = detect_scratches(self.backend, image)[0] if user_mask is None else prepare_user_mask(user_mask, image)
            if self.spec.dilates_mask:
                mask = dilate_mask(mask)
            painted = paint_holes(image, mask)
            lap("detection")
        runner = self.runner()
        try:  # a failed photo frees the runner's maps too (device memory under TensorRT)
            network_mask = mask_to_network_input(mask) if mask is not None else None
            network_input = to_network_input(painted if mask is not None else image)
            values = self.run_networks(runner, network_input, network_mask, lap)
            output = values["output"]
            restored = output_to_u8(output, stretch)
            tensors = {name: runner.to_array(values[name]) for name in ("latent", "mapped")}
        finally:
            runner.close()
        tensors["output"] = output
        return GlobalResult(restored, mask, painted, tensors, timings)

    def run_networks(self, runner, network_input: np.ndarray, network_mask: np.ndarray | None = None,
                     lap=None) -> dict:
        """The mode's graph segments and attention from the network input (1,3,H,W in [-1, 1])
        and, in the scratch modes, the mask (1,1,H,W, 0/1) to the tanh output (an array).

        Returns the runner's values at the segment boundaries: latent, mapped, output, and in
        scratch mode nl_in (the partial nonlocal block's input). The conformance check feeds the
        reference vectors' own tensors here."""
        lap = lap or (lambda name: None)
        latent = runner.run(ENCODER, {"image": runner.from_array(network_input)})["latent"]
        lap("encode")
        values = {"latent": latent}
        mapping = {None: self._plain_mapping, "nonlocal": self._scratch_mapping, "patch": self._hr_mapping}
        mapped = mapping[self.spec.attention](runner, latent, network_mask, lap, values)
        lap("mapping")
        values["mapped"] = mapped
        values["output"] = runner.to_array(runner.run(self.spec.decoder, {"latent": mapped})["output"])
        lap("decode")
        return values

    def runner(self):
        """How graph segments run: whole graphs on the backend's runner (host arrays, or device
        arrays under TensorRT); strips in the tiled subclass."""
        return self.backend.array_runner(self.chunk_bytes)

    def _plain_mapping(self, runner, latent, mask, lap, values: dict):
        (graph,) = self.spec.mapping
        return runner.run(graph, {"latent": latent})["mapped"]

    def _scratch_mapping(self, runner, latent, mask: np.ndarray, lap, values: dict):
        head = runner.run("mapping_scratch_head", {"latent": latent})
        values["nl_in"] = head["x"]
        _, h, w = runner.shape(head["x"])
        valid = attention.valid_positions(mask, h, w)
        lap("mapping")
        attended = runner.masked_attention(head["theta"], head["phi"], head["g"], valid.reshape(-1) > 0.5)
        for name in ("theta", "phi", "g"):
            runner.release(head[name])
        lap("attention")
        inputs = {"x": head["x"], "attended": attended, "valid": runner.from_array(valid)}
        return runner.run("mapping_scratch_tail", inputs)["mapped"]

    def _hr_mapping(self, runner, latent, mask: np.ndarray, lap, values: dict):
        _, h, w = runner.shape(latent)
        hole_array = attention.binarised_mask(mask, h, w)
        hole = runner.from_array(hole_array)
        out = runner.run("mapping_hr_head", {"latent": latent})
        z, x = out["z"], out["x"]
        for patch_size, graph in ((8, "mapping_hr_step1"), (4, "mapping_hr_step2"), (2, "mapping_hr_tail")):
            lap("mapping")
            composed = runner.patch_match(x, hole_array[0, 0], patch_size)
            runner.release(x)
            lap("attention")
            out = runner.run(graph, {"z": z, "composed": composed, "hole": hole})
            if graph == "mapping_hr_tail":
                return out["mapped"]
            z, x = out["z_next"], out["x_next"]
        raise AssertionError("unreachable")


class ArrayRunner:
    """Runs whole graph segments on the backend; values are (1, C, H, W) arrays."""

    def __init__(self, backend, chunk_bytes: int):
        self.backend = backend
        self.chunk_bytes = chunk_bytes

    def run(self, graph: str, inputs: dict) -> dict:
        return self.backend.run(graph, inputs)

    @staticmethod
    def shape(value) -> tuple[int, int, int]:
        return tuple(value.shape[1:])

    @staticmethod
    def to_array(value) -> np.ndarray:
        return value

    @staticmethod
    def from_array(array: np.ndarray):
        return array

    def patch_match(self, x, hole: np.ndarray, size: int):
        return self.backend.patch_match(x[0], hole, size, self.chunk_bytes)[None]

    def masked_attention(self, theta, phi, g, key_valid: np.ndarray):
        """(1, C, h, w) projections and the (h*w,) valid-key flags -> the attended (1, C, h, w)."""
        _, channels, h, w = theta.shape
        flat = [value[0].reshape(channels, -1) for value in (theta, phi, g)]
        return self.backend.masked_attention(*flat, key_valid, self.chunk_bytes).reshape(1, channels, h, w)

    def release(self, value) -> None:
        pass

    def close(self) -> None:
        pass
