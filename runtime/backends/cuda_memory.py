"""Device arrays and the copies between them, on one CUDA stream (cuda-python's runtime API).

The tiled executor and the untiled device runner keep maps here between engine calls; every
host<->device copy goes through `upload` / `download` / `copy_rows`, which count the bytes
(`transferred`), so the runs can show what reached the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CUDA_ERROR_MEMORY_ALLOCATION = 2  # cudaErrorMemoryAllocation


class DeviceOutOfMemory(MemoryError):
    """The device ran out of memory (classified by error code: cudaMalloc, or TensorRT's
    kFAILED_ALLOCATION inside execute); the tiled executor halves its strip once."""


def cuda_call(result, what: str):
    """cuda-python returns (err, *values): raise on an error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) == CUDA_ERROR_MEMORY_ALLOCATION:
        raise DeviceOutOfMemory(f"{what}: out of device memory")
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {getattr(err, 'name', err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@dataclass
class DeviceArray:
    """A float32 array in device memory (C-contiguous), freed by `free()`."""

    ptr: int
    shape: tuple[int, ...]
    memory: "DeviceMemory"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def free(self) -> None:
        if self.ptr:
            self.memory.free(self.ptr)
            self.ptr = 0


class DeviceMemory:
    """Allocation and copies on `stream`; `transferred` counts host<->device bytes."""

    def __init__(self, cudart, stream, device_name: str = "the GPU"):
        self.rt, self.stream, self.device_name = cudart, stream, device_name
        self.transferred = {"host_to_device": 0, "device_to_host": 0}
        self.live_bytes = 0
        self._sizes: dict[int, int] = {}

    def _kind(self, name: str):
        return getattr(self.rt.cudaMemcpyKind, name)

    def malloc(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 256)
        err, *values = self.rt.cudaMalloc(nbytes)
        if int(err) == CUDA_ERROR_MEMORY_ALLOCATION:
            raise DeviceOutOfMemory(f"cudaMalloc({nbytes}): out of device memory on {self.device_name}")
        ptr = int(cuda_call((err, *values), f"cudaMalloc({nbytes})"))
        self._sizes[ptr] = nbytes
        self.live_bytes += nbytes
        return ptr

    def free(self, ptr: int) -> None:
        self.live_bytes -= self._sizes.pop(ptr, 0)
        cuda_call(self.rt.cudaFree(ptr), "cudaFree")

    def empty(self, shape) -> DeviceArray:
        shape = tuple(int(d) for d in shape)
        return DeviceArray(self.malloc(int(np.prod(shape)) * 4), shape, self)

    def sync(self) -> None:
        cuda_call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def upload(self, array: np.ndarray, target: DeviceArray | None = None) -> DeviceArray:
        """Host array -> device (a new DeviceArray unless `target` is given); synchronous."""
        host = np.ascontiguousarray(array, dtype=np.float32)
        target = target or self.empty(host.shape)
        self.copy_rows(target.ptr, 0, host.ctypes.data, 0, host.nbytes, 1, "cudaMemcpyHostToDevice")
        self.sync()
        return target

    def download(self, array: DeviceArray) -> np.ndarray:
        out = np.empty(array.shape, np.float32)
        self.copy_rows(out.ctypes.data, 0, array.ptr, 0, out.nbytes, 1, "cudaMemcpyDeviceToHost")
        self.sync()
        return out

    def copy_rows(self, dst: int, dst_pitch: int, src: int, src_pitch: int, width: int, height: int,
                  kind: str) -> None:
        """`height` blocks of `width` bytes, `src_pitch` / `dst_pitch` apart (cudaMemcpy2DAsync;
        one block: cudaMemcpyAsync). `kind`: a cudaMemcpyKind name."""
        if width <= 0 or height <= 0:
            return
        if kind == "cudaMemcpyHostToDevice":
            self.transferred["host_to_device"] += width * height
        elif kind == "cudaMemcpyDeviceToHost":
            self.transferred["device_to_host"] += width * height
        if height == 1:
            cuda_call(self.rt.cudaMemcpyAsync(dst, src, width, self._kind(kind), self.stream), "cudaMemcpyAsync")
        else:
            cuda_call(self.rt.cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, height, self._kind(kind),
                                                self.stream), "cudaMemcpy2DAsync")
