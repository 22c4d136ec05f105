"""GPU kernels of the two attention kinds.

One source, in Triton (`attention_triton.py`, `patch_match_triton.py`): CI runs it on the CPU
under TRITON_INTERPRET=1, `trt-restore build-kernels` compiles it ahead of time into the
cubins shipped in `cubins/`, which the TensorRT backend (`launch.py`, cuda-python) and the
C++ plugins load. Importing this package imports neither Triton nor torch (the runtime may
import it); the Triton modules are imported only by tests, `interpret.py` and `aot.py`.

The names re-exported below (`clib.py`) build the C library of the plugins (g++, no nvcc) and
call its C entry points with ctypes.
"""
from .clib import *  # noqa: F403
