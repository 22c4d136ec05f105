"""The C library of the kernels from Python: building it with g++ and calling its entry points.

`engines/plugins/trt_restore_kernels.cpp` (the C API of trt_restore_kernels.h: it launches the
Triton AOT cubins through the CUDA driver API, opened with dlopen) is compiled into either
  - libtrt_restore_kernels.so  (C API only; CUDA headers), or
  - libtrt_restore_plugins.so  (the same + the TensorRT IPluginV3 plugins; TensorRT headers).
No CUDA code is compiled: no nvcc, no -gencode. `KernelLibrary` loads either with ctypes.
Nothing here imports torch, numpy, Triton or a CUDA binding: pointers and streams are ints.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "API_VERSION",
    "COMPUTE_AUTO",
    "COMPUTE_FP16",
    "COMPUTE_FP32",
    "CONFIG_AUTO",
    "CONFIG_MAIN",
    "CONFIG_NAMES",
    "CONFIG_NARROW",
    "CONFIG_SMALL",
    "CUBIN_DIR",
    "DEFAULT_ARCHES",
    "EXAMPLE_SOURCE",
    "FLOAT16",
    "FLOAT32",
    "KERNEL_SOURCE",
    "LIBRARY_ENV",
    "PLUGIN_DIR",
    "PLUGIN_SOURCE",
    "STATUS",
    "BuildError",
    "BuildSpec",
    "KernelError",
    "KernelLibrary",
    "build",
    "cuda_include_dir",
    "default_library_dir",
    "detect_arches",
    "find_library",
    "find_nvcc",
]

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins"
CUBIN_DIR = Path(__file__).resolve().parent / "cubins"  # the cubins and the generated kernel table
KERNEL_SOURCE = PLUGIN_DIR / "trt_restore_kernels.cpp"
PLUGIN_SOURCE = PLUGIN_DIR / "trt_restore_plugins.cpp"
EXAMPLE_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "trt_infer.cpp"
DEFAULT_ARCHES = ("80", "86", "87", "89", "90")
LIBRARY_ENV = "TRT_RESTORE_PLUGIN_LIB"
API_VERSION = 2

FLOAT32, FLOAT16 = 0, 1
COMPUTE_AUTO, COMPUTE_FP32, COMPUTE_FP16 = -1, 0, 1
CONFIG_AUTO, CONFIG_MAIN, CONFIG_SMALL, CONFIG_NARROW = 0, 1, 2, 3  # configs.CONFIG_IDS
CONFIG_NAMES = {CONFIG_AUTO: "auto", CONFIG_MAIN: "main", CONFIG_SMALL: "small", CONFIG_NARROW: "narrow"}
STATUS = {0: "success", 1: "invalid argument", 2: "workspace too small", 3: "unsupported shape or device"}


class KernelError(RuntimeError):
    """A C entry point returned a non-zero status."""

    def __init__(self, function: str, status: int, message: str):
        super().__init__(f"{function}: {message} (status {status})")
        self.status = status


class BuildError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------
@dataclass
class BuildSpec:
    """A g++ invocation for one artefact. `kind`: kernels | plugins | object."""

    kind: str
    output: Path
    trt_include: Path | None = None
    werror: bool = False
    cxx: str = "g++"
    cuda_include: Path | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)

    def command(self) -> list[str]:
        cmd = [self.cxx, "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wpedantic"]
        if self.werror:
            cmd.append("-Werror")
        cmd += ["-I", str(PLUGIN_DIR), "-I", str(CUBIN_DIR), f'-DTRTR_CUBIN_DIR="{CUBIN_DIR}"']
        include = self.cuda_include or cuda_include_dir()
        if include is None:
            raise BuildError("CUDA headers (cuda.h, cuda_runtime_api.h) not found: set CUDA_HOME")
        cmd += ["-isystem", str(include)]
        if self.kind == "object":
            return cmd + ["-c", str(KERNEL_SOURCE), "-o", str(self.output), *self.extra]
        cmd += ["-shared", "-Wl,--no-undefined"]
        sources = [str(KERNEL_SOURCE)]
        if self.kind == "plugins":
            if self.trt_include is None:
                raise BuildError("building the plugin library needs TensorRT headers (trt_include)")
            cmd += ["-isystem", str(self.trt_include)]
            sources.append(str(PLUGIN_SOURCE))
        elif self.kind != "kernels":
            raise BuildError(f"unknown build kind {self.kind!r}")
        return cmd + sources + ["-o", str(self.output), "-ldl", *self.extra]


def find_nvcc() -> str | None:
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def cuda_include_dir(nvcc: str | None = None) -> Path | None:
    """The CUDA toolkit's include/ (next to nvcc, $CUDA_HOME, $CUDA_PATH or /usr/local/cuda)."""
    nvcc = nvcc or find_nvcc()
    roots = [Path(nvcc).resolve().parent.parent] if nvcc else []
    roots += [Path(p) for p in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if p]
    roots.append(Path("/usr/local/cuda"))
    for root in roots:
        if (root / "include" / "cuda_runtime_api.h").is_file():
            return root / "include"
    return None


def detect_arches() -> tuple[str, ...]:
    """Compute capabilities of the GPUs here (nvidia-smi), else DEFAULT_ARCHES."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20)
            caps = sorted({line.strip().replace(".", "") for line in out.stdout.splitlines() if line.strip()})
            if out.returncode == 0 and caps and all(c.isdigit() for c in caps):
                return tuple(caps)
        except (OSError, subprocess.SubprocessError):
            pass
    return DEFAULT_ARCHES


def build(spec: BuildSpec, timeout: float = 600) -> Path:
    """Run the build; raises BuildError with the compiler output on failure."""
    spec.output.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(spec.command(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(spec.command())}\n{proc.stdout}{proc.stderr}")
    return spec.output


def default_library_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trt-restore" / "plugins"


def find_library(explicit: str | Path | None = None) -> Path | None:
    """The plugin/kernel library to load: explicit path, $TRT_RESTORE_PLUGIN_LIB, a CMake build
    under engines/plugins/build, or the user cache (what `build` wrote there)."""
    candidates = [explicit, os.environ.get(LIBRARY_ENV)]
    for folder in (PLUGIN_DIR / "build", default_library_dir()):
        candidates += [folder / "libtrt_restore_plugins.so", folder / "libtrt_restore_kernels.so"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


# ------------------------------------------------------------------------------------------
# Calling
# ------------------------------------------------------------------------------------------
_vp, _i, _sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t


class KernelLibrary:
    """ctypes binding of trt_restore_kernels.h. Device pointers and the stream are ints
    (torch's data_ptr(), cuda-python's allocations, 0 for the default stream)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as err:
            raise KernelError("dlopen", -1, f"cannot load {self.path}: {err}") from None
        lib = self._lib
        signatures = {
            "trtr_api_version": (_i, []),
            "trtr_status_string": (ctypes.c_char_p, [_i]),
            "trtr_set_attention_config": (_i, [_i]),
            "trtr_describe_attention": (_i, [_i, _i, ctypes.c_char_p, _sz]),
            "trtr_masked_attention_workspace_size": (_sz, [_i, _i, _i, _i, _i]),
            "trtr_masked_attention": (_i, [_vp, _vp, _vp, _vp, _vp, _i, _i, _i, _i, _i, _vp, _sz, _vp]),
            "trtr_patch_match_workspace_size": (_sz, [_i, _i, _i, _i, _i]),
            "trtr_patch_match": (_i, [_vp, _vp, _vp, _i, _i, _i, _i, _i, _i, _vp, _sz, _vp]),
        }
        for name, (restype, argtypes) in signatures.items():
            fn = getattr(lib, name, None)
            if fn is None:
                raise KernelError("dlsym", -1, f"{self.path} does not export {name}")
            fn.restype, fn.argtypes = restype, argtypes
        version = lib.trtr_api_version()
        if version != API_VERSION:
            raise KernelError("trtr_api_version", version, f"{self.path} has C API {version}, expected {API_VERSION}")
        self.has_plugins = hasattr(lib, "getCreators")

    def status_string(self, status: int) -> str:
        return self._lib.trtr_status_string(status).decode()

    def _check(self, function: str, status: int) -> None:
        if status != 0:
            raise KernelError(function, status, self.status_string(status))

    def set_attention_config(self, config: int) -> int:
        previous = self._lib.trtr_set_attention_config(config)
        if previous < 0:
            raise KernelError("trtr_set_attention_config", previous, f"unknown configuration {config}")
        return previous

    def describe_attention(self, io_dtype: int, compute: int = COMPUTE_AUTO) -> tuple[int, str]:
        buf = ctypes.create_string_buffer(512)
        status = self._lib.trtr_describe_attention(io_dtype, compute, buf, len(buf))
        return status, buf.value.decode()

    def attention_workspace_size(self, batch: int, channels: int, positions: int, io_dtype: int,
                                 compute: int = COMPUTE_AUTO) -> int:
        return int(self._lib.trtr_masked_attention_workspace_size(batch, channels, positions, io_dtype, compute))

    def masked_attention(self, theta: int, phi: int, g: int, valid: int, out: int, batch: int, channels: int,
                         positions: int, io_dtype: int, compute: int, workspace: int, workspace_bytes: int,
                         stream: int = 0) -> None:
        self._check("trtr_masked_attention", self._lib.trtr_masked_attention(
            theta, phi, g, valid, out, batch, channels, positions, io_dtype, compute, workspace, workspace_bytes,
            stream or None))

    def patch_match_workspace_size(self, batch: int, channels: int, height: int, width: int, patch: int) -> int:
        return int(self._lib.trtr_patch_match_workspace_size(batch, channels, height, width, patch))

    def patch_match(self, x: int, hole: int, out: int, batch: int, channels: int, height: int, width: int,
                    patch: int, io_dtype: int, workspace: int, workspace_bytes: int, stream: int = 0) -> None:
        self._check("trtr_patch_match", self._lib.trtr_patch_match(
            x, hole, out, batch, channels, height, width, patch, io_dtype, workspace, workspace_bytes, stream or None))
