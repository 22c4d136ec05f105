"""Hand freed heap memory back to the operating system (glibc's `malloc_trim`).

onnxruntime frees what it no longer needs (the weight copies that graph optimisation makes
while a session loads, a run's intermediate tensors when the arena is off), but glibc keeps
freed blocks below its mmap threshold in the process's heap, so the resident size stays at
its high-water mark: loading the 138 MiB quality mapping left 410 MiB resident, 139 MiB after
a trim (benchmarks/results/memory_vs_original.md). On other C libraries this is a no-op.
"""
from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
