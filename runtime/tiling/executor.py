"""Interpret a layer program strip by strip with full-frame InstanceNorm statistics.

Each `Conv` reads full-width strips of its sources (plus the halo rows its kernel needs,
reflected or zero at the frame edge, after applying the sources' pending normalisation),
runs its per-layer graph, writes the raw output once and accumulates per-channel mean and
M2 (Chan's parallel update, float64) on the way. `Norm` then only records (mean, 1/std);
the next reader applies it. Memory: the maps themselves (spilled to disk beyond a budget)
plus one strip per layer. Where maps live and how a layer runs on a strip is the backend's
`strip_ops`: HostStrips here (numpy strips through `run_layer`), device.DeviceStrips under
TensorRT (maps in device memory, layers and pointwise ops as engines).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .programs import EPS, AddInto, Blend, Conv, Copy, Norm
from .store import FrameStore

NO_FLOOR = -3.4028234e38  # "no ReLU" as a floor: max(x, -FLT_MAX) == x (engines/strip_graphs.py)

DEFAULT_STRIP_BYTES = 256 << 20
logger = logging.getLogger(__name__)


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS after each layer (glibc keeps per-thread arenas of
    freed strips otherwise, and resident memory creeps up with every layer)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _load_libc()


@dataclass
class Frame:
    store: FrameStore
    mean: np.ndarray | None = None  # pending normalisation, per channel
    inv_std: np.ndarray | None = None
    relu: bool = False
    count: int = 0  # statistics accumulated while the raw map was written
    stat_mean: np.ndarray | None = None
    stat_m2: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.store.channels, self.store.height, self.store.width

    def effective(self, rows: np.ndarray) -> np.ndarray:
        """Apply the pending normalisation/ReLU to raw (C, rows, W) values (new array)."""
        if self.mean is not None:
            out = rows - self.mean[:, None, None]
            out *= self.inv_std[:, None, None]
        else:
            out = np.array(rows, dtype=np.float32, copy=True)
        if self.relu:
            np.maximum(out, 0.0, out=out)
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.effective(self.store.read(start, stop))

    def normalisation(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pending step as per-channel (mean, scale, floor): effective = max((raw - mean) *
        scale, floor), the form the device graphs take (engines/strip_graphs.py)."""
        channels = self.shape[0]
        mean = self.mean if self.mean is not None else np.zeros(channels, np.float32)
        scale = self.inv_std if self.inv_std is not None else np.ones(channels, np.float32)
        floor = np.full(channels, 0.0 if self.relu else NO_FLOOR, np.float32)
        return mean.astype(np.float32), scale.astype(np.float32), floor

    @property
    def pending(self) -> bool:
        """True while reads apply a normalisation or ReLU to the stored raw values."""
        return self.mean is not None or self.relu

    def accumulate(self, rows: np.ndarray) -> None:
        """Chan et al. parallel mean/M2 update with one (C, rows, W) strip of raw output;
        sums are accumulated in float64."""
        flat = rows.reshape(rows.shape[0], -1)
        n = flat.shape[1]
        mean = flat.sum(axis=1, dtype=np.float64) / n
        m2 = np.maximum(np.square(flat).sum(axis=1, dtype=np.float64) - n * mean ** 2, 0.0)
        self.merge(n, mean, m2)

    def merge(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Fold one strip's count, per-channel mean and M2 into the running statistics."""
        mean, m2 = np.asarray(mean, np.float64), np.asarray(m2, np.float64)
        if self.count == 0:
            self.count, self.stat_mean, self.stat_m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.stat_mean
        self.stat_mean = self.stat_mean + delta * (n / total)
        self.stat_m2 = self.stat_m2 + m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    def close(self) -> None:
        self.store.close()


@dataclass
class ExecutorConfig:
    strip_rows: int | None = None  # fixed strip height (rows of each layer's output), else from strip_bytes
    strip_bytes: int = DEFAULT_STRIP_BYTES
    ram_map_bytes: int = 1 << 30  # maps larger than this are spilled to disk
    spill_dir: str | None = None
    max_strip_rows: int | None = None  # cap from the backend (TensorRT: its layer engines' profiles)
    device_map_bytes: int | None = None  # maps kept on the device up to this (TensorRT); None: from free memory


def strip_window(conv: Conv, start: int, stop: int) -> tuple[int, int]:
    """Input rows [lo, hi) that output rows [start, stop) of `conv` read (halo included; rows
    outside the frame are padded). Shared with the TensorRT layer profiles (engines/profiles.py),
    so the engines accept exactly the strips fed here."""
    if conv.transposed:
        return start // 2 - 1, (stop + 1) // 2 + 1
    if conv.stride == 2:
        return 2 * start - 1, 2 * stop + 1
    return start - conv.padding, stop + conv.padding


def _padded_rows(height: int, start: int, stop: int, pad: str) -> tuple[np.ndarray, np.ndarray]:
    """(source row per strip row, inside mask) for rows [start, stop) of a frame of `height`
    rows: reflected at the edges, or clamped with inside=False where the padding is zero."""
    index = np.arange(start, stop)
    inside = (index >= 0) & (index < height)
    if pad == "reflect":
        index = np.abs(index)
        index = np.where(index >= height, 2 * (height - 1) - index, index)
        inside[:] = True
    return np.clip(index, 0, height - 1), inside


COMBINE = {"copy": lambda a: a, "add": lambda a, b: a + b, "blend": lambda v, k, o: v * k + (1.0 - v) * o}


class HostStrips:
    """Maps in host memory (RAM, or disk beyond `ram_map_bytes`), layers through
    `run_layer(layer, x) -> y` on numpy strips: the onnxruntime backend's storage."""

    def __init__(self, run_layer, config: ExecutorConfig):
        self.run_layer, self.config = run_layer, config

    def new_frame(self, channels: int, height: int, width: int) -> Frame:
        on_disk = channels * height * width * 4 > self.config.ram_map_bytes
        return Frame(FrameStore(channels, height, width, on_disk=on_disk, spill_dir=self.config.spill_dir))

    @staticmethod
    def read_padded(frame: Frame, start: int, stop: int, pad: str) -> np.ndarray:
        """Effective rows [start, stop) of `frame`, rows outside the frame reflected or zero."""
        index, inside = _padded_rows(frame.shape[1], start, stop, pad)
        lo, hi = int(index.min()), int(index.max()) + 1
        block = frame.read(lo, hi)
        if inside.all() and np.array_equal(index, np.arange(lo, hi)):
            return block  # interior strip: no padding rows to assemble
        out = np.zeros((block.shape[0], stop - start, block.shape[2]), dtype=np.float32)
        out[:, inside] = block[:, index[inside] - lo]
        return out

    def conv(self, op: Conv, sources: list[Frame], target: Frame, start: int, stop: int) -> None:
        """Output rows [start, stop) of `op`: raw values into `target`, statistics merged."""
        lo, hi = strip_window(op, start, stop)
        parts = [self.read_padded(s, lo, hi, op.pad) for s in sources]
        strip = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        y = self.run_layer(op.layer, np.ascontiguousarray(strip)[None])[0]
        if op.transposed:
            offset = start - 2 * lo
            y = y[:, offset:offset + (stop - start)]
        target.store.write(start, y)
        target.accumulate(y)

    @staticmethod
    def combine(kind: str, target: Frame, reads: list[Frame], start: int, stop: int) -> None:
        target.store.write(start, COMBINE[kind](*[f.read(start, stop) for f in reads]))

    def close(self) -> None:
        pass


@dataclass
class TiledExecutor:
    """Runs programs strip by strip; `strips` holds the maps and runs a layer on one strip
    (HostStrips around `run_layer(layer, x) -> y` unless the backend gives device storage)."""

    run_layer: object
    config: ExecutorConfig = field(default_factory=ExecutorConfig)
    strips: object = None

    def __post_init__(self):
        if self.strips is None:
            self.strips = HostStrips(self.run_layer, self.config)

    def new_frame(self, channels: int, height: int, width: int) -> Frame:
        return self.strips.new_frame(channels, height, width)

    def frame_from_array(self, array: np.ndarray) -> Frame:
        """(1, C, H, W) array -> Frame."""
        _, c, h, w = array.shape
        frame = self.new_frame(c, h, w)
        frame.store.write(0, array[0])
        return frame

    @staticmethod
    def array_from_frame(frame: Frame) -> np.ndarray:
        c, h, w = frame.shape
        return frame.read(0, h)[None]

    def _strip_rows(self, conv: Conv, width: int) -> int:
        if self.config.strip_rows:
            rows = self.config.strip_rows
        else:
            per_position = 4 * (conv.in_channels * (conv.kernel ** 2 + conv.stride ** 2) + 2 * conv.out_channels)
            rows = self.config.strip_bytes // max(1, per_position * width)
        if self.config.max_strip_rows:
            rows = min(rows, self.config.max_strip_rows)
        return max(2, rows - rows % 2)

    # ---- ops -------------------------------------------------------------------------
    def _conv(self, op: Conv, frames: dict[str, Frame]) -> Frame:
        sources = [frames[name] for name in op.sources]
        _, height, width = sources[0].shape
        if op.transposed:
            out_h, out_w = 2 * height, 2 * width
        elif op.stride == 2:
            out_h, out_w = height // 2, width // 2
        else:
            out_h, out_w = height, width
        target = self.new_frame(op.out_channels, out_h, out_w)
        step, halved, start = self._strip_rows(op, out_w), False, 0
        while start < out_h:
            stop = min(out_h, start + step)
            try:
                self.strips.conv(op, sources, target, start, stop)
            except MemoryError as err:  # e.g. the device's memory: nothing of this strip was written
                if halved or step <= 2:
                    raise
                halved, step = True, max(2, step // 4 * 2)
                logger.warning("%s: out of memory on a %d-row strip (%s); retrying with %d-row strips",
                               op.layer, stop - start, err, step)
                continue
            start = stop
        _release_freed_memory()
        return target

    def _pointwise(self, kind: str, shape, reads: list[Frame], target: Frame | None = None) -> Frame:
        channels, height, width = shape
        out = target if target is not None else self.new_frame(channels, height, width)
        step = max(1, self.config.strip_bytes // max(1, 4 * channels * width))
        if self.config.max_strip_rows:
            step = min(step, self.config.max_strip_rows)
        for start in range(0, height, step):
            self.strips.combine(kind, out, reads, start, min(height, start + step))
        return out

    def run(self, program: list, frames: dict[str, Frame]) -> dict[str, Frame]:
        """Execute `program`, mutating and returning `frames` (name -> Frame)."""

        def assign(name: str, frame: Frame) -> None:
            old = frames.get(name)
            if old is not None and old is not frame and all(f is not old for k, f in frames.items() if k != name):
                old.close()
            frames[name] = frame

        for op in program:
            if isinstance(op, Conv):
                assign(op.target, self._conv(op, frames))
            elif isinstance(op, Norm):
                frame = frames[op.target]
                if frame.count == 0 or frame.mean is not None:
                    raise RuntimeError(f"Norm of {op.target}: no fresh statistics")
                frame.mean = frame.stat_mean.astype(np.float32)
                frame.inv_std = (1.0 / np.sqrt(frame.stat_m2 / frame.count + EPS)).astype(np.float32)
                frame.relu = op.relu
            elif isinstance(op, AddInto):
                target, source = frames[op.target], frames[op.source]
                self._pointwise("add", target.shape, [target, source], target=target)
                target.mean = target.inv_std = None
                target.relu = False
                target.count = 0
            elif isinstance(op, Copy):
                source = frames[op.source]
                assign(op.target, self._pointwise("copy", source.shape, [source]))
            elif isinstance(op, Blend):
                keep = frames[op.keep]
                assign(op.target, self._pointwise("blend", keep.shape, [frames[op.valid], keep, frames[op.other]]))
            else:
                raise TypeError(f"unknown op {op!r}")
        return frames
