"""Stand-ins for TensorRT, cuda-python and a GPU, and a tiny exported model directory.

The fakes implement just the API surface the builder and the TensorRT backend use (names as
in TensorRT 10.x / 11.x Python and cuda.bindings.runtime), record what was called, and move
bytes with ctypes so the backend's buffer handling runs for real.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from trt_restore.engines.environment import GpuInfo

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", 80 << 30)
ORIN = GpuInfo(0, "Orin", "8.7", 32 << 30)


def tiny_onnx(path: Path, input_name: str, output_name: str, channels: int) -> Path:
    """Conv 1x1 -> InstanceNormalization -> Relu -> Resize(x1) -> + 0.5, float32, dynamic N/H/W."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(channels)
    inits = [numpy_helper.from_array(rng.standard_normal((channels, channels, 1, 1)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(np.zeros(channels, np.float32), "b"),
             numpy_helper.from_array(np.ones(channels, np.float32), "scale"),
             numpy_helper.from_array(np.zeros(channels, np.float32), "bias"),
             numpy_helper.from_array(np.array([1, 1, 1, 1], np.float32), "scales"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("Conv", [input_name, "w", "b"], ["c"]),
             helper.make_node("InstanceNormalization", ["c", "scale", "bias"], ["n"], epsilon=1e-5),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Resize", ["r", "", "scales"], ["z"], mode="nearest"),
             helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
             helper.make_node("Mul", ["z", "k"], ["m"]),
             helper.make_node("Add", ["m", "half"], [output_name])]
    dims = ["batch", channels, "height", "width"]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def models_dir(root: Path, graphs=(("mapping_quality", "latent", "mapped", 64),
                                   ("vae_b_quality_decoder", "latent", "output", 64))) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, inp, out, channels in graphs:
        path = tiny_onnx(root / f"{name}.onnx", inp, out, channels)
        entries[name] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                         "inputs": [{"name": inp, "shape": ["batch", channels, "height", "width"]}],
                         "outputs": [{"name": out, "shape": ["batch", channels, "height", "width"]}]}
    (root / "models.json").write_text(json.dumps({"graphs": entries, "versions": {}}))
    return root


# ------------------------------------------------------------------------------------------
# TensorRT
# ------------------------------------------------------------------------------------------
class _Flags(SimpleNamespace):
    pass


class FakeTrt:
    """A `tensorrt` module of a given version: records builds, returns JSON "plans"."""

    def __init__(self, version: str = "10.3.0", run_onnx: bool = False, execute_oom_rows: int | None = None):
        self.__version__ = version
        self.run_onnx = run_onnx  # engines compute their ONNX graph with onnxruntime (OnnxEngine)
        # execute_async_v3 on a strip taller than this fails with kFAILED_ALLOCATION (recorded)
        self.execute_oom_rows = execute_oom_rows
        self.execute_failures: list[tuple[int, ...]] = []
        self.executions: list[str] = []  # ONNX source of every execute_async_v3 (run_onnx engines)
        self.deserialized: list[dict] = []  # per plan: version-compatible?, host code allowed then?
        major = int(version.split(".")[0])
        names = ["TF32", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "REFIT"]
        if major <= 10:
            names += ["FP16", "INT8", "BF16", "OBEY_PRECISION_CONSTRAINTS"]
        self.BuilderFlag = _Flags(**{n: n for n in names})
        self.NetworkDefinitionCreationFlag = _Flags(STRONGLY_TYPED=1 if major <= 10 else 0)
        self.MemoryPoolType = _Flags(WORKSPACE="WORKSPACE")
        self.TensorIOMode = _Flags(INPUT="INPUT", OUTPUT="OUTPUT")
        self.builds: list[dict] = []
        trt = self

        class Logger:
            WARNING = "WARNING"

            def __init__(self, severity=None):
                self.severity = severity

        class IProgressMonitor:
            def __init__(self):
                pass

        class IErrorRecorder:
            def __init__(self):
                pass

        self.Logger = Logger
        self.IProgressMonitor = IProgressMonitor
        self.IErrorRecorder = IErrorRecorder
        self.Builder = lambda logger: _Builder(trt)
        self.OnnxParser = lambda network, logger: _Parser(network)
        self.Runtime = lambda logger: _Runtime(trt)
        self.loaded_libraries: list[str] = []

    @staticmethod
    def nptype(dtype):
        return np.dtype(dtype).type


class _Network:
    def __init__(self, flags):
        self.flags = flags
        self.source = None


class _Parser:
    def __init__(self, network):
        self.network = network
        self.num_errors = 0

    def parse_from_file(self, path):
        self.network.source = str(path)
        return Path(path).is_file()

    def get_error(self, i):
        return "parse error"


class _TimingCache:
    def __init__(self, blob: bytes):
        self.blob = bytes(blob)

    def serialize(self):
        return self.blob + b"+"


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class _Config:
    def __init__(self):
        self.flags, self.cleared, self.profiles, self.pool = set(), set(), [], {}
        self.timing_cache_in = None
        self.progress_monitor = None
        self._cache = None

    def set_memory_pool_limit(self, pool, size):
        self.pool[pool] = size

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.cleared.add(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def create_timing_cache(self, blob):
        self.timing_cache_in = bytes(blob)
        return _TimingCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        self._cache = cache

    def get_timing_cache(self):
        return self._cache


class _Builder:
    def __init__(self, trt: FakeTrt):
        self.trt = trt

    def create_network(self, flags=0):
        return _Network(flags)

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        if config.progress_monitor is not None:
            config.progress_monitor.phase_start("Building", None, 2)
            config.progress_monitor.step_complete("Building", 0)
            config.progress_monitor.step_complete("Building", 1)
            config.progress_monitor.phase_finish("Building")
        record = {"network_flags": network.flags, "source": network.source, "flags": sorted(config.flags),
                  "cleared": sorted(config.cleared), "timing_cache_in": config.timing_cache_in.decode(errors="replace"),
                  "profile": {k: [list(map(list, v))] for k, v in config.profiles[0].shapes.items()}}
        self.trt.builds.append(record)
        return json.dumps(record).encode()


def _out_of_memory(context, trt) -> bool:
    """The stand-in's execute-time allocation failure: a strip taller than trt.execute_oom_rows
    reports kFAILED_ALLOCATION to the context's error recorder, as TensorRT does."""
    shape = context.shapes.get("x")
    if trt is None or trt.execute_oom_rows is None or shape is None or shape[2] <= trt.execute_oom_rows:
        return False
    trt.execute_failures.append(shape)
    recorder = getattr(context, "error_recorder", None)
    if recorder is not None:
        recorder.report_error(5, f"out of memory for a {shape[2]}-row strip")  # kFAILED_ALLOCATION
    return True


# runtime side: engines are the JSON "plans"; the context doubles its input ("x" for a layer graph)
class _Engine:
    def __init__(self, plan: dict, trt=None):
        self.trt = trt
        self.inputs = sorted(plan["profile"])
        self.primary = "x" if "x" in self.inputs else self.inputs[0]
        self.outputs = ["y", "ymean", "ym2"] if "x" in self.inputs else ["out"]
        self.num_io_tensors = len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, i):
        return (self.inputs + self.outputs)[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name in self.inputs else "OUTPUT"

    def get_tensor_dtype(self, name):
        return np.float32

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine):
        self.engine = engine
        self.shapes, self.addresses = {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name in ("ymean", "ym2"):
            return (1, self.shapes["x"][1], 1, 1)
        return self.shapes[self.engine.primary] if name in ("out", "y") else self.shapes[name]

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        if _out_of_memory(self, self.engine.trt):
            return False
        shape = self.shapes[self.engine.primary]
        src = _floats(self.addresses[self.engine.primary], shape)
        _floats(self.addresses[self.engine.outputs[0]], shape)[...] = src * 2
        for name in self.engine.outputs[1:]:
            _floats(self.addresses[name], self.get_tensor_shape(name))[...] = 0.0
        return True


class _Registry:
    def __init__(self, trt):
        self.trt = trt

    def load_library(self, path):
        self.trt.loaded_libraries.append(path)
        return object()


class OnnxEngine(_Engine):
    """An engine whose context computes the plan's real graph: its ONNX source run by
    onnxruntime inside the stand-in, so outputs are real and comparable (tensor names, modes
    and dtypes as the plain stand-in engine)."""

    def __init__(self, plan: dict, trt):
        import onnxruntime as ort

        self.trt, self.source = trt, plan["source"]
        self.session = ort.InferenceSession(self.source, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.num_io_tensors = len(self.inputs) + len(self.outputs)
        self._shapes: dict = {}

    def output_shapes(self, input_shapes: dict) -> dict:
        """Output shapes for these input shapes (one run on zeros per new shape set)."""
        key = tuple(sorted(input_shapes.items()))
        if key not in self._shapes:
            zeros = {n: np.zeros(s, np.float32) for n, s in input_shapes.items()}
            self._shapes[key] = {n: v.shape for n, v in zip(self.outputs, self.session.run(self.outputs, zeros))}
        return self._shapes[key]

    def create_execution_context(self):
        return _OnnxContext(self)


class _OnnxContext(_Context):
    """The plain context's shape and address bookkeeping; shapes and outputs from the ONNX graph."""

    def get_tensor_shape(self, name):
        if name in self.engine.inputs:
            return self.shapes[name]
        return self.engine.output_shapes({n: self.shapes[n] for n in self.engine.inputs})[name]

    def execute_async_v3(self, stream):
        if _out_of_memory(self, self.engine.trt):
            return False
        feed = {n: _floats(self.addresses[n], self.shapes[n]).copy() for n in self.engine.inputs}
        results = self.engine.session.run(self.engine.outputs, feed)
        for name, value in zip(self.engine.outputs, results):
            _floats(self.addresses[name], value.shape)[...] = value
        self.engine.trt.executions.append(self.engine.source)
        return True


class _Runtime:
    def __init__(self, trt):
        self.trt = trt
        self.engine_host_code_allowed = False  # TensorRT >= 10's default

    def deserialize_cuda_engine(self, blob):
        plan = json.loads(bytes(blob))
        compatible = "VERSION_COMPATIBLE" in plan.get("flags", [])
        self.trt.deserialized.append({"version_compatible": compatible,
                                      "host_code_allowed": self.engine_host_code_allowed})
        if compatible and not self.engine_host_code_allowed:
            return None  # what TensorRT does: the embedded lean runtime is host code
        return OnnxEngine(plan, self.trt) if self.trt.run_onnx else _Engine(plan, self.trt)

    def get_plugin_registry(self):
        return _Registry(self.trt)


# ------------------------------------------------------------------------------------------
# cuda-python runtime: host memory stands in for device memory
# ------------------------------------------------------------------------------------------
class _Err(int):
    @property
    def name(self):
        return "cudaSuccess" if self == 0 else f"cudaError{int(self)}"


class _Stream:
    def __int__(self):
        return 0x5EED


class FakeCudart:
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2, cudaMemcpyDeviceToDevice=3)

    def __init__(self, device_count: int = 1, error: int = 0, free: int = 64 << 30, malloc_limit: int | None = None):
        self.device_count, self.error = device_count, error
        self.free, self.malloc_limit = free, malloc_limit  # cudaMemGetInfo; larger cudaMalloc: out of memory
        self.failed_mallocs: list[int] = []
        self.buffers: dict[int, ctypes.Array] = {}
        self.allocations = 0
        self.copies = []

    def _alloc(self, nbytes):
        buf = ctypes.create_string_buffer(int(nbytes))
        ptr = ctypes.addressof(buf)
        self.buffers[ptr] = buf
        self.allocations += 1
        return (_Err(0), ptr)

    def cudaGetDeviceCount(self):
        return (_Err(self.error), self.device_count if not self.error else None)

    def cudaGetDeviceProperties(self, device):
        return (_Err(0), SimpleNamespace(name=b"NVIDIA H100 80GB HBM3\x00", major=9, minor=0, totalGlobalMem=80 << 30))

    def cudaSetDevice(self, device):
        return (_Err(0),)

    def cudaMalloc(self, nbytes):
        if self.malloc_limit is not None and nbytes > self.malloc_limit:
            self.failed_mallocs.append(int(nbytes))
            return (_Err(2), None)  # cudaErrorMemoryAllocation
        return self._alloc(nbytes)

    def cudaMemGetInfo(self):
        return (_Err(0), self.free, 80 << 30)

    def cudaMallocHost(self, nbytes):
        return self._alloc(nbytes)

    def cudaFree(self, ptr):
        self.buffers.pop(ptr, None)
        return (_Err(0),)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        ctypes.memmove(dst, src, nbytes)
        self.copies.append((kind, nbytes))
        return (_Err(0),)

    def cudaMemcpy2DAsync(self, dst, dpitch, src, spitch, width, height, kind, stream):
        for row in range(height):
            ctypes.memmove(dst + row * dpitch, src + row * spitch, width)
        self.copies.append((kind, width * height))
        return (_Err(0),)

    def transferred(self) -> int:
        """Bytes copied between host and device (either way) so far."""
        kinds = (self.cudaMemcpyKind.cudaMemcpyHostToDevice, self.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        return sum(nbytes for kind, nbytes in self.copies if kind in kinds)

    def cudaStreamCreate(self):
        return (_Err(0), _Stream())

    def cudaStreamSynchronize(self, stream):
        return (_Err(0),)

    def cudaStreamDestroy(self, stream):
        return (_Err(0),)


# ------------------------------------------------------------------------------------------
# the GPU kernels (engines/kernels/launch.AotKernels): numpy on the stand-in "device" memory
# ------------------------------------------------------------------------------------------
def _floats(ptr: int, shape) -> np.ndarray:
    n = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr)).reshape(shape)


class FakeKernels:
    """AotKernels' interface; computes with the runtime's numpy attention and records calls."""

    def __init__(self):
        self.calls: list[str] = []

    def describe(self) -> str:
        return "stand-in kernels"

    def attention_workspace_bytes(self, positions: int) -> int:
        return 8 * positions + 16

    def patch_workspace_bytes(self, patches: int) -> int:
        return 12 * patches + 16

    def masked_attention(self, theta, phi, g, valid, out, positions, workspace, stream, precision=None):
        from trt_restore import attention

        arrays = [_floats(p, (512, positions)) for p in (theta, phi, g)]
        mask = _floats(valid, (positions,)) > 0.5
        _floats(out, (512, positions))[...] = attention.masked_attention(*arrays, mask)
        self.calls.append("masked_attention")

    def patch_match(self, x, hole, out, channels, height, width, size, workspace, stream=0):
        from trt_restore import attention

        result = attention.patch_match(_floats(x, (channels, height, width)), _floats(hole, (height, width)), size)
        _floats(out, (channels, height, width))[...] = result
        self.calls.append("patch_match")


def add_layers(root: Path, layers=(("VAE_A_quality/encoder.1", 3), ("mapping_quality/model.0", 64))) -> Path:
    """Per-layer graphs (models.json `layers`, tiled/*.onnx) for a stand-in model directory."""
    (root / "tiled").mkdir(exist_ok=True)
    manifest = json.loads((root / "models.json").read_text())
    for layer, channels in layers:
        name = "tiled/" + layer.replace("/", "__") + ".onnx"
        tiny_onnx(root / name, "x", "y", channels)
        manifest.setdefault("layers", {})[layer] = {"file": name}
    (root / "models.json").write_text(json.dumps(manifest))
    return root
