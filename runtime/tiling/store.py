"""Full-frame activation maps kept as (channels, height, width), like the graphs' NCHW.

A strip of rows is one contiguous block per channel, read straight into the NCHW strip the
per-layer graphs take. Small maps live in RAM; maps beyond the memory budget live in an
unlinked temporary file read and written with pread/pwrite (one call per channel), so they
occupy the page cache (reclaimable) rather than the process's resident memory.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np


class FrameStore:
    """Storage for one (channels, height, width) float32 map."""

    on_device = False  # host memory or disk (runtime/tiling/device.py keeps maps on the GPU)

    def __init__(self, channels: int, height: int, width: int, on_disk: bool = False, spill_dir: str | None = None):
        self.channels, self.height, self.width = channels, height, width
        self.row_bytes = width * 4  # one row of one channel
        self.plane_bytes = height * width * 4
        self._fd = None
        self._ram = None
        if on_disk:
            handle, path = tempfile.mkstemp(prefix="trt-restore-", suffix=".f32", dir=spill_dir)
            os.unlink(path)  # vanishes with the process, whatever happens
            os.ftruncate(handle, self.plane_bytes * channels)
            self._fd = handle
        else:
            self._ram = np.empty((channels, height, width), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return self.plane_bytes * self.channels

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a (C, rows, W) array (a copy for disk maps, a view in RAM)."""
        if self._ram is not None:
            return self._ram[:, start:stop]
        out = np.empty((self.channels, stop - start, self.width), dtype=np.float32)
        length = (stop - start) * self.row_bytes
        for channel in range(self.channels):
            view = memoryview(out[channel]).cast("B")
            offset, done = channel * self.plane_bytes + start * self.row_bytes, 0
            while done < length:
                done += os.preadv(self._fd, [view[done:]], offset + done)
        return out

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write (C, rows, W) at row `start`."""
        if self._ram is not None:
            self._ram[:, start:start + rows.shape[1]] = rows
            return
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        length = rows.shape[1] * self.row_bytes
        for channel in range(self.channels):
            view = memoryview(rows[channel]).cast("B")
            offset, done = channel * self.plane_bytes + start * self.row_bytes, 0
            while done < length:
                done += os.pwritev(self._fd, [view[done:]], offset + done)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._ram = None

    def __del__(self):
        self.close()
