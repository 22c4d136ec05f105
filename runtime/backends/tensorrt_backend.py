"""TensorRT backend: cached engines on one CUDA stream, with cuda-python (not pycuda).

- engines are deserialised once per graph (the plan is chosen from the engine cache by model
  hash, precision, GPU and TensorRT version, and must cover the input shapes); the kernel /
  plugin library is loaded once;
- `run` (host arrays): device buffers and pinned host buffers are kept per (graph, tensor)
  and only grow, so a batch of photos of similar size allocates once; one stream: async
  host->device copies, execute_async_v3, async device->host copies, one synchronisation;
- untiled restores chain the split graphs on the device (`array_runner` -> DeviceRunner,
  `run_device`): outputs stay in device memory and feed the next graph and the kernels;
- every host<->device copy goes through `memory` (cuda_memory.DeviceMemory), which counts
  the bytes;
- the attention steps between the split graphs (masked nonlocal attention, HR patch match)
  run on the GPU with the shipped Triton AOT cubins, loaded through cuda-python's driver API
  (engines/kernels/launch.py); a GPU without a cubin for its compute capability, or a missing
  driver binding, makes the backend unavailable (TrtBackendUnavailable, one line: `auto` falls
  back to onnxruntime saying why, `trt` fails) instead of running them in numpy on the host;
- exact tiling (runtime/tiling) keeps its maps in device memory (`strip_ops` ->
  runtime/tiling/device.py) and runs the wrapped per-layer graphs and the op graphs on their
  strip-profile engines (`execute_device`; engines/strip_graphs.py); without them `trt` cannot
  tile (BackendUnsupported with the reason) and `auto` runs the layers on onnxruntime, saying
  so in `fallback_reason`; out of device memory, by error code (cudaMalloc, a stream
  synchronisation, or kFAILED_ALLOCATION inside execute_async_v3), is a DeviceOutOfMemory;
- a global graph without an engine is an error naming the graph and `build-engines`; only the
  face generators (not built under int8: no Q/DQ model) fall back to onnxruntime, logged.
Calls are serialised by a lock (one stream, shared buffers): use one backend per thread for
parallel inference.
"""
from __future__ import annotations

import ctypes
import json
import logging
import threading
from pathlib import Path

import numpy as np

from ..engines.cache import EngineCache, model_digest, runtime_accepts, sha256_file
from ..engines.environment import (GpuUnavailable, TensorRTUnavailable, _cudart, gpu_info, import_tensorrt,
                                   tensorrt_version)
from ..engines import kernels
from ..engines.kernels import launch as aot_launch
from ..engines.profiles import FACE_SIZES, Profile, shape_remedy
from ..engines.strip_graphs import NO_FLOOR, OP_PREFIX, OPS, op_digest, op_graph_name, wrapped_digest
from ..engines.trt_logging import FAILED_ALLOCATION, error_recorder
from ..model_store import GRAPHS_FOR_MODE, ModelStore, ModelStoreError
from .base import Backend, BackendUnsupported
from .cuda_memory import DeviceArray, DeviceMemory, DeviceOutOfMemory, cuda_call

__all__ = ["TrtBackend", "TrtBackendUnavailable", "DeviceOutOfMemory", "availability"]


class TrtBackendUnavailable(RuntimeError):
    """The TensorRT backend cannot run here; str() says why in one line."""


class _NoEngine(LookupError):
    """No cached engine of any profile for a graph."""


DEVICE_STRIP_SHARE = 4  # a strip's device buffers and the engine's activations: at most 1/4 of free memory
DEVICE_MAP_SHARE = 2  # tiled maps kept on the device: at most 1/2 of the free memory


logger = logging.getLogger(__name__)


_call = cuda_call  # out of device memory (by error code) is a DeviceOutOfMemory


def engines_dir_for(store: ModelStore, engines_dir=None) -> Path:
    return Path(engines_dir).expanduser() if engines_dir else store.root / "engines"


def availability(models_dir, precision: str = "fp16", engines_dir=None, trt=None, gpu=None) -> tuple[bool, str]:
    """(True, "") when the TensorRT backend can run here, else (False, the reason), checked in
    this order: TensorRT module, CUDA bindings + GPU, exported models, cached engines for this
    GPU / TensorRT version. `trt` / `gpu` are injectable for tests."""
    try:
        trt = trt or import_tensorrt(require_builder=False)
    except TensorRTUnavailable as err:
        return False, f"no TensorRT: {err}"
    try:
        gpu = gpu or gpu_info()
    except GpuUnavailable as err:
        return False, f"no CUDA GPU: {err}"
    try:
        store = models_dir if isinstance(models_dir, ModelStore) else ModelStore.open(models_dir)
    except ModelStoreError as err:
        return False, f"no models: {err}"
    cache = EngineCache(engines_dir_for(store, engines_dir))
    version = str(tensorrt_version(trt))
    graphs = store.manifest.get("graphs", {})
    ready, reasons = [], []
    for graph in sorted(set().union(*GRAPHS_FOR_MODE.values())):
        if graph not in graphs:
            continue
        path, why = cache.find(graph, model_digest(store.root, graphs[graph], precision), precision, gpu.name,
                               gpu.compute_capability, version, verify=False)
        (ready if path else reasons).append(graph if path else why)
    if not ready:
        detail = reasons[0] if reasons else f"nothing in {cache.root}"
        return False, (f"no {precision} engines for {gpu.name} / TensorRT {version} "
                       f"(run `trt-restore build-engines --models {store.root}`): {detail}")
    return True, ""


class TrtBackend(Backend):
    name = "trt"

    def __init__(self, models_dir, precision: str = "fp16", engines_dir=None, plugin_library=None, device: int = 0,
                 trt=None, cudart=None, gpu=None, layer_fallback: bool = False):
        ok, reason = availability(models_dir, precision, engines_dir, trt=trt, gpu=gpu)
        if not ok:
            raise TrtBackendUnavailable(reason)
        self.store = models_dir if isinstance(models_dir, ModelStore) else ModelStore.open(models_dir)
        self.precision = precision
        self._trt = trt or import_tensorrt(require_builder=False)
        self._cudart = cudart or _cudart()
        self.gpu = gpu or gpu_info(device)
        self.version = str(tensorrt_version(self._trt))
        self.cache = EngineCache(engines_dir_for(self.store, engines_dir))
        _call(self._cudart.cudaSetDevice(device), "cudaSetDevice")
        self._logger = self._trt.Logger(self._trt.Logger.WARNING)
        self._runtime = self._trt.Runtime(self._logger)
        library = kernels.find_library(plugin_library)
        if library is not None:  # the TensorRT plugins, for engines that contain them
            try:
                self._runtime.get_plugin_registry().load_library(str(library))
            except (RuntimeError, AttributeError) as err:
                logger.warning("TensorRT plugin library %s not loaded: %s", library, err)
        self.kernels = self._load_kernels()
        self.kernel_note = f"attention on the GPU ({self.kernels.describe()})"
        self._stream = _call(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.memory = DeviceMemory(self._cudart, self._stream, self.gpu.name)
        self._recorders: dict[str, object] = {}
        self._engines: dict[str, tuple] = {}
        self._device: dict[tuple[str, str], tuple[int, int]] = {}
        self._host: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._cpu_backend = None
        self._digests: dict[str, str] = {}
        self.cpu_graphs: set[str] = set()
        self.fallback_reason = None
        self._layer_fallback = layer_fallback
        self.layers_reason, self.max_strip_rows = self._layer_engines()
        if self.layers_reason and layer_fallback:
            self.fallback_reason = f"tiling runs its per-layer graphs on onnxruntime (CPU): {self.layers_reason}"

    def _load_kernels(self):
        """The attention / patch-match cubins for this GPU; without them the backend is
        unavailable (a host numpy attention would be silently orders of magnitude slower)."""
        try:
            major, minor = (int(v) for v in self.gpu.compute_capability.split("."))
            return aot_launch.AotKernels(major, minor)
        except (aot_launch.KernelUnavailable, OSError, ValueError) as err:
            raise TrtBackendUnavailable(f"GPU kernels for sm {self.gpu.compute_capability} unavailable: "
                                        f"{err}") from None

    @property
    def runs_layers(self) -> bool:
        return self.layers_reason is None or self._layer_fallback

    def _layer_engines(self) -> tuple[str | None, int | None]:
        """(None, strip rows) when every per-layer graph has an engine for this GPU / TensorRT /
        precision, else (the one-line reason, None). Model hashes are checked on first use."""
        layers = dict(self.store.manifest.get("layers") or {})
        if not layers:
            return f"{self.store.root} has no per-layer graphs (re-run `trt-restore export`)", None
        layers.update({op_graph_name(kind): None for kind in OPS})  # the device executor's pointwise ops
        rows: dict[str, int] = {}
        for _, record in self.cache.entries():
            if (record.get("graph") in layers and record.get("precision") == self.precision
                    and record.get("gpu_name") == self.gpu.name
                    and record.get("compute_capability") == self.gpu.compute_capability
                    and runtime_accepts(str(record.get("tensorrt_version")), self.version,
                                        bool(record.get("version_compatible")))):
                rows[record["graph"]] = min(rows.get(record["graph"], 1 << 30), int(record.get("strip_rows") or 2))
        missing = [layer for layer in layers if layer not in rows]
        if missing:
            return (f"no {self.precision} engines for {len(missing)} of {len(layers)} per-layer and op graphs "
                    f"(e.g. {missing[0]}) for {self.gpu.name} / TensorRT {self.version}; run `trt-restore "
                    f"build-engines --models {self.store.root}` (it builds them unless --no-layers)"), None
        return None, min(rows.values())

    # ---- buffers ---------------------------------------------------------------------------
    def _device_buffer(self, key: tuple[str, str], nbytes: int) -> int:
        ptr, size = self._device.get(key, (0, 0))
        if size < nbytes:
            if ptr:
                del self._device[key]  # freed: never handed out again, even if the next malloc fails
                self.memory.free(ptr)
            ptr = self._malloc(max(nbytes, 256))
            self._device[key] = (ptr, max(nbytes, 256))
        return ptr

    def _malloc(self, nbytes: int) -> int:
        """cudaMalloc; out of device memory is a DeviceOutOfMemory (classified by error code), so
        the tiled executor can retry with a smaller strip."""
        return self.memory.malloc(nbytes)

    def _free_memory(self) -> int | None:
        try:
            free, _ = _call(self._cudart.cudaMemGetInfo(), "cudaMemGetInfo")
        except (RuntimeError, AttributeError) as err:
            logger.warning("TensorRT backend: free device memory unknown (%s); strips from --max-memory", err)
            return None
        return int(free)

    @property
    def max_strip_bytes(self) -> int | None:
        """The tiled executor's strip budget from the device's free memory now (cudaMemGetInfo);
        the runner takes the smaller of this and the --max-memory plan's."""
        free = self._free_memory()
        return None if free is None else max(16 << 20, free // DEVICE_STRIP_SHARE)

    def strip_ops(self, config):
        """Device storage for the tiled executor (runtime/tiling/device.py): maps stay on the GPU
        up to `config.device_map_bytes` (default: half the free memory), the rest spills to the
        host. Without layer engines (`auto` tiling on onnxruntime): host strips."""
        if self.layers_reason:
            return super().strip_ops(config)
        from ..tiling.device import DeviceStrips

        budget = config.device_map_bytes
        if budget is None:
            budget = (self._free_memory() or 0) // DEVICE_MAP_SHARE
        return DeviceStrips(self.memory, self.execute_device, config, budget)

    def _host_view(self, key: tuple[str, str], dtype, shape) -> tuple[int, np.ndarray]:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if len(shape) else 1
        nbytes = max(count * dtype.itemsize, 256)
        ptr, size = self._host.get(key, (0, 0))
        if size < nbytes:
            if ptr:
                _call(self._cudart.cudaFreeHost(ptr), "cudaFreeHost")
            ptr = int(_call(self._cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
            self._host[key] = (ptr, nbytes)
        buffer = (ctypes.c_byte * (count * dtype.itemsize)).from_address(ptr)
        return ptr, np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)

    def _copy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        """One async copy on the stream, counted in memory.transferred (kind: a cudaMemcpyKind name)."""
        self.memory.copy_rows(dst, 0, src, 0, nbytes, 1, kind)

    def _sync(self) -> None:
        _call(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    # ---- engines ---------------------------------------------------------------------------
    def _digest(self, graph: str, layer: bool) -> str:
        """The engine key's model hash: models.json's sha256, or the layer file's (none recorded)."""
        digest = self._digests.get(graph)
        if digest is None:
            if graph.startswith(OP_PREFIX):
                digest = op_digest(graph[len(OP_PREFIX):])
            elif layer:
                digest = wrapped_digest(sha256_file(self.store.layer_path(graph)))
            else:
                entry = self.store.manifest.get("graphs", {}).get(graph)
                if entry is None:
                    raise ModelStoreError(f"{self.store.root}: graph {graph!r} was not exported")
                digest = model_digest(self.store.root, entry, self.precision)
            self._digests[graph] = digest
        return digest

    def _engine(self, graph: str, shapes: dict, layer: bool = False):
        loaded = self._engines.get(graph)
        if loaded is not None and loaded[2].covers(shapes):
            return loaded
        digest = self._digest(graph, layer)
        path, why = self.cache.find(graph, digest, self.precision, self.gpu.name, self.gpu.compute_capability,
                                    self.version, input_shapes=shapes)
        if path is None and self.cache.find(graph, digest, self.precision, self.gpu.name,
                                            self.gpu.compute_capability, self.version, verify=False)[0] is None:
            raise _NoEngine(why)
        if path is None:
            remedy = "a larger --strip-rows / --tiled-max-side" if layer else shape_remedy(graph)
            raise RuntimeError(f"no TensorRT engine for {graph} at {shapes}: {why}; "
                               f"run `trt-restore build-engines` with {remedy}")
        sidecar = json.loads(path.with_suffix(".json").read_text())
        if sidecar.get("version_compatible"):
            self._allow_host_code()
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise RuntimeError(f"{path}: TensorRT could not deserialise the plan")
        context = engine.create_execution_context()
        recorder = error_recorder(self._trt)
        if recorder is not None:  # out of memory inside execute_async_v3, by its error code
            context.error_recorder = recorder
            self._recorders[graph] = recorder
        profile = Profile.from_json(sidecar["profile"])
        loaded = (engine, context, profile, path)
        self._engines[graph] = loaded
        return loaded

    def _allow_host_code(self) -> None:
        """Version-compatible plans embed the lean runtime, host code that TensorRT >= 10 only
        deserialises when the runtime allows it (default: not allowed)."""
        try:
            self._runtime.engine_host_code_allowed = True
        except AttributeError as err:
            raise RuntimeError(f"TensorRT {self.version} cannot load version-compatible plans "
                               f"(no engine_host_code_allowed: {err})") from None

    def _cpu(self):
        if self._cpu_backend is None:
            from .onnxruntime_backend import OrtBackend

            self._cpu_backend = OrtBackend(self.store)
        return self._cpu_backend

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the graph's engine. A graph without any engine for this GPU is an error naming
        `build-engines`, except the face generators (int8 builds skip them: no Q/DQ model),
        which run on onnxruntime, logged once and listed in `cpu_graphs` and describe()."""
        if graph not in self.cpu_graphs:
            with self._lock:
                shapes = {name: tuple(int(d) for d in value.shape) for name, value in inputs.items()}
                try:
                    engine, context, _, _ = self._engine(graph, shapes)
                except _NoEngine as err:
                    if graph not in FACE_SIZES:
                        raise RuntimeError(f"no {self.precision} TensorRT engine for {graph} on {self.gpu.name} "
                                           f"({err}); run `trt-restore build-engines --models {self.store.root}`"
                                           ) from None
                    self.cpu_graphs.add(graph)
                    logger.warning("no TensorRT engine for %s on this GPU: running it with onnxruntime", graph)
                else:
                    return self._execute(graph, engine, context, inputs, shapes)
        return self._cpu().run(graph, inputs)

    def run_layer(self, layer: str, x: np.ndarray) -> np.ndarray:
        """One per-layer graph of the tiled executor on one host strip (its strip-profile engine,
        fed the identity normalisation); the device executor calls execute_device instead."""
        if self.layers_reason:
            if not self._layer_fallback:
                raise BackendUnsupported(f"--backend trt cannot tile: {self.layers_reason}")
            return self._cpu().run_layer(layer, x)
        channels, rows = x.shape[1], x.shape[2]
        inputs = {"x": x, "mean": np.zeros((1, channels, 1, 1), np.float32),
                  "scale": np.ones((1, channels, 1, 1), np.float32),
                  "floor": np.full((1, channels, 1, 1), NO_FLOOR, np.float32),
                  "rows": np.ones((1, 1, rows, 1), np.float32)}
        with self._lock:
            engine, context = self._layer_engine(layer, {"x": tuple(int(d) for d in x.shape)})
            out_rows = self._output_rows(layer, rows)
            inputs["keep"] = np.ones((1, 1, out_rows, 1), np.float32)
            shapes = {name: tuple(int(d) for d in value.shape) for name, value in inputs.items()}
            outputs = self._execute(layer, engine, context, inputs, shapes)
        return outputs["y"]

    def _layer_engine(self, layer: str, shapes: dict):
        try:
            engine, context, _, _ = self._engine(layer, shapes, layer=True)
        except _NoEngine as err:
            raise RuntimeError(f"no {self.precision} TensorRT engine for strip graph {layer} ({err}); "
                               f"run `trt-restore build-engines --models {self.store.root}`") from None
        return engine, context

    @staticmethod
    def _output_rows(layer: str, rows: int) -> int:
        """Rows of `y` on a strip of `rows` input rows (the keep mask's length)."""
        from ..engines.profiles import layer_output_rows, layer_scales

        return layer_output_rows(layer_scales()[layer][0], rows)

    def execute_device(self, graph: str, inputs: dict[str, DeviceArray], outputs: dict[str, DeviceArray]) -> None:
        """Run a per-layer or op engine on device arrays: inputs and outputs bound in place, no
        host copy (queued on the stream; downloading a result synchronises)."""
        with self._lock:
            engine, context = self._layer_engine(graph, {name: value.shape for name, value in inputs.items()})
            self._bind(graph, engine, context, inputs, outputs)
            self._launch(graph, context)

    def run_device(self, graph: str, inputs: dict[str, DeviceArray]) -> dict[str, DeviceArray]:
        """`run` on device arrays: the outputs are new device arrays (the caller frees them), so
        one graph's outputs feed the next without a host round trip."""
        with self._lock:
            try:
                engine, context, _, _ = self._engine(graph, {name: value.shape for name, value in inputs.items()})
            except _NoEngine as err:
                raise RuntimeError(f"no {self.precision} TensorRT engine for {graph} on {self.gpu.name} ({err}); "
                                   f"run `trt-restore build-engines --models {self.store.root}`") from None
            outputs = self._bind(graph, engine, context, inputs)
            try:
                self._launch(graph, context)
            except Exception:
                for value in outputs.values():
                    value.free()
                raise
            return outputs

    def array_runner(self, chunk_bytes: int):
        """Untiled segments chained on the device (DeviceRunner)."""
        return DeviceRunner(self)

    def _execute(self, graph: str, engine, context, inputs: dict, shapes: dict) -> dict[str, np.ndarray]:
        trt = self._trt
        names = self._set_input_shapes(graph, engine, context, shapes)
        outputs = {}
        for name in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            dptr = self._device_buffer((graph, name), nbytes)
            hptr, view = self._host_view((graph, name), dtype, shape)
            context.set_tensor_address(name, dptr)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                np.copyto(view, inputs[name], casting="unsafe")
                self._copy(dptr, hptr, nbytes, "cudaMemcpyHostToDevice")
            else:
                outputs[name] = (dptr, hptr, view, nbytes)
        self._launch(graph, context)
        for dptr, hptr, _, nbytes in outputs.values():
            self._copy(hptr, dptr, nbytes, "cudaMemcpyDeviceToHost")
        self._sync()
        return {name: view.astype(np.float32, copy=True) for name, (_, _, view, _) in outputs.items()}

    def _bind(self, graph: str, engine, context, inputs: dict[str, DeviceArray],
              outputs: dict[str, DeviceArray] | None = None) -> dict[str, DeviceArray]:
        """Bind device arrays to the engine's tensors; outputs=None allocates new ones (the
        caller frees them). Returns the outputs."""
        trt = self._trt
        names = self._set_input_shapes(graph, engine, context, {k: v.shape for k, v in inputs.items()})
        if outputs is None:
            outputs = {name: self.memory.empty(tuple(int(d) for d in context.get_tensor_shape(name)))
                       for name in names if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT}
        for name in names:
            if np.dtype(trt.nptype(engine.get_tensor_dtype(name))) != np.float32:
                raise RuntimeError(f"{graph}: tensor {name!r} is not float32; rebuild its engine")
            bound = inputs.get(name) if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs.get(name)
            if bound is None:
                raise ValueError(f"{graph}: no buffer for output {name!r}")
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if int(np.prod(shape)) != int(np.prod(bound.shape)):
                raise ValueError(f"{graph}: {name!r} is {shape}, its buffer {bound.shape}")
            context.set_tensor_address(name, bound.ptr)
        return outputs

    def _set_input_shapes(self, graph: str, engine, context, shapes: dict) -> list[str]:
        """Give the context every input's shape (a missing input is an error); returns all tensor names."""
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT:
                if name not in shapes:
                    raise ValueError(f"{graph}: missing input {name!r}")
                context.set_input_shape(name, shapes[name])
        return names

    def _launch(self, graph: str, context) -> None:
        """execute_async_v3; an allocation failure inside it (TensorRT's kFAILED_ALLOCATION on the
        context's error recorder) is a DeviceOutOfMemory, so the tiled executor halves its strip."""
        recorder = self._recorders.get(graph)
        if recorder is not None:
            recorder.clear()
        if context.execute_async_v3(int(self._stream)):
            return
        codes = recorder.codes if recorder is not None else []
        if FAILED_ALLOCATION in codes:
            raise DeviceOutOfMemory(f"{graph}: TensorRT ran out of device memory in execute_async_v3 on "
                                    f"{self.gpu.name}")
        raise RuntimeError(f"{graph}: TensorRT execution failed" + (f" (error codes {codes})" if codes else ""))

    # ---- attention steps (Triton AOT cubins, engines/kernels/launch.py) --------------------
    def _upload(self, key: tuple[str, str], value: np.ndarray) -> int:
        """A host array into the reused device buffer `key` (through its pinned buffer)."""
        hptr, view = self._host_view(key, np.float32, value.shape)
        np.copyto(view, value, casting="unsafe")
        dptr = self._device_buffer(key, view.nbytes)
        self._copy(dptr, hptr, view.nbytes, "cudaMemcpyHostToDevice")
        return dptr

    def _download(self, key: tuple[str, str], dptr: int, shape) -> np.ndarray:
        hptr, view = self._host_view(key, np.float32, shape)
        self._copy(hptr, dptr, view.nbytes, "cudaMemcpyDeviceToHost")
        self._sync()
        return view.copy()

    def _attention_kernels(self, theta: int, phi: int, g: int, key_valid: np.ndarray, out: int, positions: int):
        """The attention cubins on device pointers ((512, N) fp32 each); only the N valid-key
        flags come from the host."""
        valid = self._upload(("attention", "valid"), key_valid.astype(np.float32).reshape(-1))
        ws = self._device_buffer(("attention", "workspace"), self.kernels.attention_workspace_bytes(positions))
        precision = "ieee" if self.precision == "fp32" else aot_launch.configs.DEFAULT_PRECISION  # fp16x3
        self.kernels.masked_attention(theta, phi, g, valid, out, positions, ws, int(self._stream), precision=precision)

    def masked_attention(self, theta: np.ndarray, phi: np.ndarray, g: np.ndarray, key_valid: np.ndarray,
                         chunk_bytes: int | None = None) -> np.ndarray:
        """Same contract as trt_restore.attention.masked_attention: (C, N) arrays in, (C, N) out."""
        if self.kernels is None or theta.shape[0] != 512:
            return super().masked_attention(theta, phi, g, key_valid, chunk_bytes)
        channels, positions = theta.shape
        with self._lock:
            ptrs = [self._upload(("attention", name), value) for name, value in (("theta", theta), ("phi", phi),
                                                                                   ("g", g))]
            out = self._device_buffer(("attention", "out"), channels * positions * 4)
            self._attention_kernels(*ptrs, key_valid, out, positions)
            return self._download(("attention", "out"), out, (channels, positions))

    def masked_attention_frames(self, theta, phi, g, key_valid: np.ndarray, target, chunk_bytes: int | None = None):
        """Tiled scratch mode: maps on the device go to the kernels in place; otherwise (spilled
        maps) the host default."""
        frames = (theta, phi, g, target)
        if (self.kernels is None or theta.shape[0] != 512
                or not all(f.store.on_device and not f.pending for f in frames)):
            return super().masked_attention_frames(theta, phi, g, key_valid, target, chunk_bytes)
        _, height, width = theta.shape
        with self._lock:
            self._attention_kernels(theta.store.ptr, phi.store.ptr, g.store.ptr, key_valid, target.store.ptr,
                                    height * width)
            self._sync()

    def _patch_kernels(self, x: int, hole: np.ndarray, out: int, shape, size: int) -> None:
        """Patch match on device pointers: out <- x on the device, then the cubins; only the
        (H, W) hole map comes from the host."""
        channels, height, width = shape
        hole_ptr = self._upload(("patch", "hole"), hole.reshape(1, height, width))
        patches = (height // size) * (width // size)
        ws = self._device_buffer(("patch", "workspace"), self.kernels.patch_workspace_bytes(patches))
        self._copy(out, x, channels * height * width * 4, "cudaMemcpyDeviceToDevice")
        self.kernels.patch_match(x, hole_ptr, out, channels, height, width, size, ws, int(self._stream))

    def patch_match_frames(self, source, target, hole: np.ndarray, size: int) -> None:
        """Tiled HR: a map kept on the device goes to the kernels in place; a spilled one (it did
        not fit the device) streams through the host-side default."""
        if self.kernels is None or not (source.store.on_device and target.store.on_device and not source.pending):
            return super().patch_match_frames(source, target, hole, size)
        with self._lock:
            self._patch_kernels(source.store.ptr, hole, target.store.ptr, source.shape, size)
            self._sync()

    def patch_match(self, x: np.ndarray, hole: np.ndarray, size: int, chunk_bytes: int | None = None) -> np.ndarray:
        """Same contract as trt_restore.attention.patch_match: x (C, H, W), hole (H, W)."""
        if self.kernels is None:
            return super().patch_match(x, hole, size, chunk_bytes)
        with self._lock:
            x_ptr = self._upload(("patch", "x"), x)
            out = self._device_buffer(("patch", "out"), x.size * 4)
            self._patch_kernels(x_ptr, hole, out, x.shape, size)
            return self._download(("patch", "out"), out, x.shape)

    def patch_match_device(self, x: DeviceArray, hole: np.ndarray, size: int) -> DeviceArray:
        """Untiled HR on the device: (1, C, H, W) in, a new device array out."""
        out = self.memory.empty(x.shape)
        with self._lock:
            self._patch_kernels(x.ptr, hole, out.ptr, x.shape[1:], size)
        return out

    def masked_attention_device(self, theta: DeviceArray, phi: DeviceArray, g: DeviceArray,
                                key_valid: np.ndarray) -> DeviceArray:
        out = self.memory.empty(theta.shape)
        with self._lock:
            self._attention_kernels(theta.ptr, phi.ptr, g.ptr, key_valid, out.ptr, int(np.prod(theta.shape[2:])))
        return out

    def describe(self) -> str:
        tiling = (f"tiling on per-layer engines (strips up to {self.max_strip_rows} rows)" if not self.layers_reason
                  else "tiling on onnxruntime" if self._layer_fallback else "no tiling (no per-layer engines)")
        cpu = f", on onnxruntime: {', '.join(sorted(self.cpu_graphs))}" if self.cpu_graphs else ""
        return (f"TensorRT {self.version} on {self.gpu.name} (sm {self.gpu.compute_capability}), "
                f"{self.precision} engines in {self.cache.root}, {self.kernel_note}, {tiling}{cpu}")

    def close(self) -> None:
        with self._lock:
            for ptr, _ in self._device.values():
                self.memory.free(ptr)
            for ptr, _ in self._host.values():
                self._cudart.cudaFreeHost(ptr)
            self._device.clear()
            self._host.clear()
            self._engines.clear()
            if self._stream is not None:
                self._cudart.cudaStreamDestroy(self._stream)
                self._stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class DeviceRunner:
    """ArrayRunner's interface with values kept as DeviceArrays: a graph's outputs feed the
    next graph, the attention kernels and the patch match on the device. The host sees the
    network input and the masks going in and what `to_array` is asked for (the output, and
    the latent / mapped tensors GlobalResult reports)."""

    def __init__(self, backend: TrtBackend):
        self.backend, self.memory = backend, backend.memory
        self._owned: list[DeviceArray] = []

    def _own(self, value: DeviceArray) -> DeviceArray:
        self._owned.append(value)
        return value

    def _device(self, value) -> DeviceArray:
        return value if isinstance(value, DeviceArray) else self.from_array(value)

    def run(self, graph: str, inputs: dict) -> dict:
        outputs = self.backend.run_device(graph, {name: self._device(value) for name, value in inputs.items()})
        for value in outputs.values():
            self._own(value)
        return outputs

    @staticmethod
    def shape(value) -> tuple[int, int, int]:
        return tuple(value.shape[1:])

    def to_array(self, value) -> np.ndarray:
        return self.memory.download(value) if isinstance(value, DeviceArray) else value

    def from_array(self, array: np.ndarray) -> DeviceArray:
        return self._own(self.memory.upload(array))

    def patch_match(self, x: DeviceArray, hole: np.ndarray, size: int) -> DeviceArray:
        return self._own(self.backend.patch_match_device(x, hole, size))

    def masked_attention(self, theta, phi, g, key_valid: np.ndarray):
        if self.backend.kernels is None or theta.shape[1] != 512:  # e.g. a stand-in without kernels
            _, channels, h, w = theta.shape
            flat = [self.to_array(v)[0].reshape(channels, -1) for v in (theta, phi, g)]
            return self.from_array(self.backend.masked_attention(*flat, key_valid).reshape(1, channels, h, w))
        return self._own(self.backend.masked_attention_device(theta, phi, g, key_valid))

    @staticmethod
    def release(value) -> None:
        if isinstance(value, DeviceArray):
            value.free()

    def close(self) -> None:
        for value in self._owned:
            value.free()
        self._owned.clear()
