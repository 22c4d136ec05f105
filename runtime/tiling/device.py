"""Tiled maps kept in device memory, with the layer and pointwise steps run as engines there.

`DeviceStrips` is the TensorRT backend's storage for the strip executor (HostStrips' device
twin). Maps live in device memory while they fit `map_budget` bytes; beyond it (or when a
device allocation fails) a map goes to host memory or disk (a FrameStore), and only its strips
cross the bus. A layer's strip is assembled on the device from its sources' raw rows (halo
rows reflected, zero-padding rows masked), normalised inside the wrapped layer engine, and its
output rows are copied into the target map; the engine also returns the strip's per-channel
mean and M2, the only per-strip numbers that reach the host (2 x C floats). Add, copy and
blend run as the `strip/*` op engines. See engines/strip_graphs.py and docs/tiling.md.
"""
from __future__ import annotations

import logging

import numpy as np

from ..backends.cuda_memory import DeviceArray, DeviceMemory, DeviceOutOfMemory
from .executor import ExecutorConfig, Frame, _padded_rows, strip_window
from .store import FrameStore

logger = logging.getLogger(__name__)
D2D, H2D, D2H = "cudaMemcpyDeviceToDevice", "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"


class DeviceFrameStore:
    """A (channels, height, width) float32 map in device memory; FrameStore's interface for
    host-side readers (each read or write is a counted copy)."""

    on_device = True

    def __init__(self, memory: DeviceMemory, channels: int, height: int, width: int, on_close=None):
        self.memory, self._on_close = memory, on_close
        self.channels, self.height, self.width = channels, height, width
        self.row_bytes, self.plane_bytes = width * 4, height * width * 4
        self.array = memory.empty((channels, height, width))

    @property
    def ptr(self) -> int:
        return self.array.ptr

    @property
    def nbytes(self) -> int:
        return self.plane_bytes * self.channels

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((self.channels, stop - start, self.width), np.float32)
        self.memory.copy_rows(out.ctypes.data, (stop - start) * self.row_bytes, self.ptr + start * self.row_bytes,
                              self.plane_bytes, (stop - start) * self.row_bytes, self.channels, D2H)
        self.memory.sync()
        return out

    def write(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        length = rows.shape[1] * self.row_bytes
        self.memory.copy_rows(self.ptr + start * self.row_bytes, self.plane_bytes, rows.ctypes.data, length,
                              length, self.channels, H2D)
        self.memory.sync()

    def close(self) -> None:
        if self.array.ptr:
            self.array.free()
            if self._on_close is not None:
                self._on_close(self.nbytes)


def on_device(frame: Frame) -> bool:
    return frame.store.on_device


class DeviceStrips:
    """Strip storage and steps on the device. `engines(graph, inputs, outputs)` executes one
    engine on DeviceArrays (TrtBackend.execute_device); `conv_graph(op)` names the wrapped
    layer graph of a Conv."""

    def __init__(self, memory: DeviceMemory, engines, config: ExecutorConfig, map_budget: int):
        self.memory, self.engines, self.config = memory, engines, config
        self.map_budget = map_budget
        self.map_bytes = 0  # device maps alive now
        self._scratch: dict[str, DeviceArray] = {}
        self._spilled = False

    # ---- maps --------------------------------------------------------------------------
    def new_frame(self, channels: int, height: int, width: int) -> Frame:
        nbytes = channels * height * width * 4
        if self.map_bytes + nbytes <= self.map_budget:
            try:
                store = DeviceFrameStore(self.memory, channels, height, width, on_close=self._released)
            except DeviceOutOfMemory as err:
                self._note_spill(f"device allocation failed ({err})")
            else:
                self.map_bytes += nbytes
                return Frame(store)
        else:
            self._note_spill(f"device maps reached their budget of {self.map_budget >> 20} MiB")
        on_disk = nbytes > self.config.ram_map_bytes
        return Frame(FrameStore(channels, height, width, on_disk=on_disk, spill_dir=self.config.spill_dir))

    def _released(self, nbytes: int) -> None:
        self.map_bytes -= nbytes

    def _note_spill(self, why: str) -> None:
        if not self._spilled:
            logger.info("tiled maps beyond the device go to host memory: %s", why)
            self._spilled = True

    def scratch(self, role: str, shape) -> DeviceArray:
        """A reused device buffer for `role` (grows, never shrinks), viewed with `shape`."""
        shape = tuple(int(d) for d in shape)
        nbytes = int(np.prod(shape)) * 4
        held = self._scratch.get(role)
        if held is None or held.nbytes < nbytes:
            if held is not None:
                del self._scratch[role]
                held.free()
            held = self.memory.empty((max(nbytes // 4, 64),))
            self._scratch[role] = held
        return DeviceArray(held.ptr, shape, self.memory)  # a view: freed with the held buffer only

    def upload(self, role: str, array: np.ndarray) -> DeviceArray:
        return self.memory.upload(array, self.scratch(role, array.shape))

    # ---- rows in and out -----------------------------------------------------------------
    def gather(self, frame: Frame, index: np.ndarray, staging: DeviceArray, channel_offset: int) -> None:
        """Raw rows `index` of `frame` into staging (1, C_total, R, W) at `channel_offset`:
        device to device, or host to device for a spilled map; consecutive rows in one copy."""
        channels, height, width = frame.shape
        rows_total, row_bytes = staging.shape[2], width * 4
        dst_base = staging.ptr + channel_offset * rows_total * row_bytes
        keep_alive = []
        run_start = 0
        for pos in range(1, len(index) + 1):
            if pos < len(index) and index[pos] == index[pos - 1] + 1:
                continue
            first, count = int(index[run_start]), pos - run_start
            dst = dst_base + run_start * row_bytes
            if on_device(frame):
                self.memory.copy_rows(dst, rows_total * row_bytes, frame.store.ptr + first * row_bytes,
                                      height * row_bytes, count * row_bytes, channels, D2D)
            else:
                block = np.ascontiguousarray(frame.store.read(first, first + count), np.float32)
                keep_alive.append(block)
                self.memory.copy_rows(dst, rows_total * row_bytes, block.ctypes.data, count * row_bytes,
                                      count * row_bytes, channels, H2D)
            run_start = pos
        if keep_alive:
            self.memory.sync()

    def scatter(self, source: DeviceArray, offset: int, target: Frame, start: int, count: int) -> None:
        """Rows [offset, offset + count) of a (1, C, R, W) device array into rows [start, ...) of
        `target` (device to device, or device to host for a spilled map)."""
        channels, height, width = target.shape
        rows_total, row_bytes = source.shape[2], width * 4
        src = source.ptr + offset * row_bytes
        if on_device(target):
            self.memory.copy_rows(target.store.ptr + start * row_bytes, height * row_bytes, src,
                                  rows_total * row_bytes, count * row_bytes, channels, D2D)
            return
        block = np.empty((channels, count, width), np.float32)
        self.memory.copy_rows(block.ctypes.data, count * row_bytes, src, rows_total * row_bytes, count * row_bytes,
                              channels, D2H)
        self.memory.sync()
        target.store.write(start, block)

    def _norm_inputs(self, prefix: str, frames: list[Frame]) -> dict[str, DeviceArray]:
        parts = [f.normalisation() for f in frames]
        return {f"{prefix}{name}": self.upload(f"{prefix}{name}", np.concatenate([p[i] for p in parts])[None, :, None, None])
                for i, name in enumerate(("mean", "scale", "floor"))}

    # ---- steps ---------------------------------------------------------------------------
    def conv(self, op, sources: list[Frame], target: Frame, start: int, stop: int) -> None:
        lo, hi = strip_window(op, start, stop)
        width = sources[0].shape[2]
        staging = self.scratch("x", (1, sum(s.shape[0] for s in sources), hi - lo, width))
        offset, rows_mask = 0, None
        for source in sources:
            index, inside = _padded_rows(source.shape[1], lo, hi, op.pad)
            self.gather(source, index, staging, offset)  # zero-padding rows: a clamped row, masked out
            offset += source.shape[0]
            rows_mask = inside if rows_mask is None else rows_mask
        inputs = {"x": staging, "rows": self.upload("rows", rows_mask.astype(np.float32)[None, None, :, None])}
        inputs.update(self._norm_inputs("", sources))
        out_w = target.shape[2]
        first = start - 2 * lo if op.transposed else 0
        graph_rows = 2 * (hi - lo) if op.transposed else stop - start
        keep = np.zeros(graph_rows, np.float32)
        keep[first:first + stop - start] = 1.0
        inputs["keep"] = self.upload("keep", keep[None, None, :, None])
        outputs = {"y": self.scratch("y", (1, op.out_channels, graph_rows, out_w)),
                   "ymean": self.scratch("ymean", (1, op.out_channels, 1, 1)),
                   "ym2": self.scratch("ym2", (1, op.out_channels, 1, 1))}
        self.engines(op.layer, inputs, outputs)
        self.scatter(outputs["y"], first, target, start, stop - start)
        mean = self.memory.download(outputs["ymean"]).reshape(-1)
        m2 = self.memory.download(outputs["ym2"]).reshape(-1)
        target.merge((stop - start) * out_w, mean, m2)

    def combine(self, kind: str, target: Frame, reads: list[Frame], start: int, stop: int) -> None:
        inputs = {}
        for name, frame in zip("abc", reads):
            staging = self.scratch(name, (1, frame.shape[0], stop - start, frame.shape[2]))
            self.gather(frame, np.arange(start, stop), staging, 0)
            inputs[name] = staging
            inputs.update(self._norm_inputs(f"{name}_", [frame]))
        out = self.scratch("out", (1, target.shape[0], stop - start, target.shape[2]))
        self.engines(f"strip/{kind}", inputs, {"out": out})
        self.scatter(out, 0, target, start, stop - start)

    def close(self) -> None:
        for held in self._scratch.values():
            held.free()
        self._scratch.clear()
