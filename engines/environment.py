"""What TensorRT and which GPU are here, with one clear sentence when something is missing.

Everything that needs TensorRT or a GPU goes through `import_tensorrt()` and `gpu_info()`, so
the rest of the engine code (cache keys, profiles, version logic) runs and is tested on a
machine with neither.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass


class TensorRTUnavailable(RuntimeError):
    """TensorRT (full builder + ONNX parser, or runtime) cannot be used here."""


class GpuUnavailable(RuntimeError):
    """No usable CUDA GPU (or no CUDA Python bindings to see it)."""


RTX_PREFIX = "rtx-"


@dataclass(frozen=True)
class TrtVersion:
    """A TensorRT version; `rtx` marks TensorRT-RTX (numbered 1.x, strongly typed only), whose
    text carries the prefix "rtx-" so that cache keys and timing caches never mix the two."""

    major: int
    minor: int
    patch: int = 0
    text: str = ""
    rtx: bool = False

    @classmethod
    def parse(cls, text: str) -> "TrtVersion":
        match = re.match(r"\s*(rtx-)?(\d+)\.(\d+)(?:\.(\d+))?", str(text), re.IGNORECASE)
        if not match:
            raise ValueError(f"cannot read TensorRT version {text!r}")
        return cls(int(match.group(2)), int(match.group(3)), int(match.group(4) or 0), str(text).strip(),
                   rtx=bool(match.group(1)))

    def __str__(self) -> str:
        return self.text or f"{RTX_PREFIX if self.rtx else ''}{self.major}.{self.minor}.{self.patch}"

    @property
    def label(self) -> str:
        """For people: "TensorRT 10.3.0", "TensorRT-RTX 1.7.1.116"."""
        text = str(self)
        return f"TensorRT-RTX {text[len(RTX_PREFIX):]}" if self.rtx else f"TensorRT {text}"

    def tuple(self) -> tuple[int, int, int]:
        return self.major, self.minor, self.patch

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 removed weak typing (BuilderFlag.FP16 / INT8 and friends); TensorRT-RTX
        never had it."""
        return self.rtx or self.major >= 11

    @property
    def has_precision_flags(self) -> bool:
        return not self.strongly_typed_only


@dataclass(frozen=True)
class BuildStrategy:
    """How a precision is obtained with a given TensorRT version."""

    onnx_variant: str  # "fp32" | "fp16" (converted ONNX, fp32 I/O) | "qdq" (calibrated Q/DQ ONNX)
    builder_flags: tuple[str, ...]  # trt.BuilderFlag names to set
    clear_flags: tuple[str, ...]  # trt.BuilderFlag names to clear
    strongly_typed: bool  # network from strongly typed creation (TensorRT >= 11: always)

    def describe(self) -> str:
        parts = [f"{self.onnx_variant} ONNX", "strongly typed" if self.strongly_typed else "weakly typed"]
        if self.builder_flags:
            parts.append("flags " + "+".join(self.builder_flags))
        return ", ".join(parts)


PRECISIONS = ("fp32", "fp16", "int8")


def build_strategy(version: TrtVersion, precision: str) -> BuildStrategy:
    """fp32: plain network, TF32 off (results within fp32 tolerances of the reference).
    fp16: TensorRT 10.x: weakly typed + FP16 flag on the fp32 ONNX; TensorRT 11+: the flags are
    gone, so an fp16 ONNX (fp32 I/O, InstanceNorm kept in fp32) is built strongly typed.
    int8: Q/DQ ONNX from calibration; 10.x: INT8 + FP16 flags (explicit quantisation);
    11+: strongly typed."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return BuildStrategy("fp32", (), ("TF32",), version.strongly_typed_only)
    if version.strongly_typed_only:
        return BuildStrategy("fp16" if precision == "fp16" else "qdq", (), (), True)
    if precision == "fp16":
        return BuildStrategy("fp32", ("FP16",), (), False)
    return BuildStrategy("qdq", ("INT8", "FP16"), (), False)


def import_tensorrt(require_builder: bool = True):
    """The `tensorrt` module, or TensorRTUnavailable saying why (and what to install)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as err:
        lean = _importable("tensorrt_lean") or _importable("tensorrt_dispatch")
        hint = (" (only the lean/dispatch runtime is installed: it runs version-compatible engines but "
                "cannot build them)" if lean else "")
        raise TensorRTUnavailable(f"the TensorRT Python package is not installed{hint}: install TensorRT "
                                  f"(pip install 'trt-restore[trt]' or JetPack's python3-libnvinfer); "
                                  f"import failed: {err}") from None
    except Exception as err:  # noqa: BLE001 - a broken install raises anything from its loader
        raise TensorRTUnavailable(f"TensorRT is installed but cannot be loaded: {err}") from None
    if require_builder and not hasattr(trt, "Builder"):
        raise TensorRTUnavailable("this `tensorrt` module has no Builder (a runtime-only package); "
                                  "engines must be built where the full TensorRT is installed")
    if require_builder and not hasattr(trt, "OnnxParser"):
        raise TensorRTUnavailable("this `tensorrt` module has no OnnxParser; install the full TensorRT")
    return trt


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def is_rtx(trt) -> bool:
    """TensorRT-RTX's bindings (`tensorrt_rtx_bindings`, or `tensorrt_rtx`) report 1.x versions:
    recognised by the module's name, not its number."""
    return str(getattr(trt, "__name__", "")).startswith("tensorrt_rtx")


def tensorrt_version(trt) -> TrtVersion:
    text = str(getattr(trt, "__version__", "0.0.0"))
    if is_rtx(trt) and not text.lower().startswith(RTX_PREFIX):
        text = RTX_PREFIX + text
    return TrtVersion.parse(text)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "9.0"
    total_memory: int  # bytes

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") + "-sm" + self.compute_capability.replace(".", "")


def _cudart():
    """cuda-python's runtime module (cuda.bindings.runtime, or cuda.cudart before 12.6)."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pass
    try:
        return importlib.import_module("cuda.cudart")
    except ImportError:
        raise GpuUnavailable("the CUDA Python bindings are not installed (pip install cuda-python)") from None


def _ok(result, what: str):
    """cuda-python calls return (err, *values); raise GpuUnavailable unless err is success."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise GpuUnavailable(f"{what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else values


def gpu_info(device: int = 0, cudart=None) -> GpuInfo:
    """Name, compute capability and memory of `device`, or GpuUnavailable with the reason."""
    cudart = cudart or _cudart()
    count = _ok(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount (no CUDA driver or GPU?)")
    if count < 1:
        raise GpuUnavailable("no CUDA GPU found")
    if device >= count:
        raise GpuUnavailable(f"GPU {device} requested but only {count} present")
    props = _ok(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    name = name.split("\x00", 1)[0].strip()
    return GpuInfo(device, name, f"{props.major}.{props.minor}", int(props.totalGlobalMem))


def gpu_memory(device: int = 0, cudart=None) -> tuple[int, int]:
    """(free, total) bytes of `device` now (cudaMemGetInfo), or GpuUnavailable with the reason."""
    cudart = cudart or _cudart()
    _ok(cudart.cudaSetDevice(device), f"cudaSetDevice({device})")
    free, total = _ok(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    return int(free), int(total)
