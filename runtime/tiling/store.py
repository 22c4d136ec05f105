"""Full-frame activation maps kept row-major as (rows, channels, width).

A strip of rows is then one contiguous block. Small maps live in RAM; maps beyond the
memory budget live in an unlinked temporary file read and written with pread/pwrite, so
they occupy the page cache (reclaimable) rather than the process's resident memory.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np


class FrameStore:
    """Storage for one (channels, height, width) float32 map."""

    def __init__(self, channels: int, height: int, width: int, on_disk: bool = False, spill_dir: str | None = None):
        self.channels, self.height, self.width = channels, height, width
        self.row_bytes = channels * width * 4
        self._fd = None
        self._ram = None
        if on_disk:
            handle, path = tempfile.mkstemp(prefix="trt-restore-", suffix=".f32", dir=spill_dir)
            os.unlink(path)  # vanishes with the process, whatever happens
            os.ftruncate(handle, self.row_bytes * height)
            self._fd = handle
        else:
            self._ram = np.empty((height, channels, width), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return self.row_bytes * self.height

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a (rows, C, W) array (a copy for disk maps, a view in RAM)."""
        if self._ram is not None:
            return self._ram[start:stop]
        out = np.empty((stop - start, self.channels, self.width), dtype=np.float32)
        view = memoryview(out).cast("B")
        offset, done = start * self.row_bytes, 0
        while done < len(view):
            done += os.preadv(self._fd, [view[done:]], offset + done)
        return out

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write (rows, C, W) at row `start`."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if self._ram is not None:
            self._ram[start:start + rows.shape[0]] = rows
            return
        view = memoryview(rows).cast("B")
        offset, done = start * self.row_bytes, 0
        while done < len(view):
            done += os.pwritev(self._fd, [view[done:]], offset + done)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._ram = None

    def __del__(self):
        self.close()
