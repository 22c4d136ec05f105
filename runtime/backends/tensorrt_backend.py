"""TensorRT backend: cached engines on one CUDA stream, with cuda-python (not pycuda).

- engines are deserialised once per graph (the plan is chosen from the engine cache by model
  hash, precision, GPU and TensorRT version, and must cover the input shapes); the kernel /
  plugin library is loaded once;
- device buffers and pinned host buffers are kept per (graph, tensor) and only grow, so a
  batch of photos of similar size allocates once;
- one stream: async host->device copies, execute_async_v3, async device->host copies, one
  synchronisation per call;
- the attention steps between the split graphs (masked nonlocal attention, HR patch match)
  run on the GPU with the shipped Triton AOT cubins, loaded through cuda-python's driver API
  (engines/kernels/launch.py); a GPU without a cubin for its compute capability, or a missing
  driver binding, makes the backend unavailable (TrtBackendUnavailable, one line: `auto` falls
  back to onnxruntime saying why, `trt` fails) instead of running them in numpy on the host;
- exact tiling (runtime/tiling) runs the per-layer graphs on their own strip-profile engines
  (`run_layer`); without them `trt` cannot tile (BackendUnsupported with the reason) and `auto`
  runs the layers on onnxruntime, saying so in `fallback_reason`;
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
from ..model_store import GRAPHS_FOR_MODE, ModelStore, ModelStoreError
from .base import Backend, BackendUnsupported


class TrtBackendUnavailable(RuntimeError):
    """The TensorRT backend cannot run here; str() says why in one line."""


class _NoEngine(LookupError):
    """No cached engine of any profile for a graph."""


class DeviceOutOfMemory(MemoryError):
    """cudaMalloc failed for lack of device memory (the tiled executor halves its strip once)."""


CUDA_ERROR_MEMORY_ALLOCATION = 2  # cudaErrorMemoryAllocation
DEVICE_STRIP_SHARE = 4  # a strip's device buffers and the engine's activations: at most 1/4 of free memory


logger = logging.getLogger(__name__)


def _call(result, what: str):
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {getattr(err, 'name', err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


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
        layers = self.store.manifest.get("layers") or {}
        if not layers:
            return f"{self.store.root} has no per-layer graphs (re-run `trt-restore export`)", None
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
            return (f"no {self.precision} engines for {len(missing)} of {len(layers)} per-layer graphs "
                    f"(e.g. {missing[0]}) for {self.gpu.name} / TensorRT {self.version}; run `trt-restore "
                    f"build-engines --models {self.store.root}` (it builds them unless --no-layers)"), None
        return None, min(rows.values())

    # ---- buffers ---------------------------------------------------------------------------
    def _device_buffer(self, key: tuple[str, str], nbytes: int) -> int:
        ptr, size = self._device.get(key, (0, 0))
        if size < nbytes:
            if ptr:
                del self._device[key]  # freed: never handed out again, even if the next malloc fails
                _call(self._cudart.cudaFree(ptr), "cudaFree")
            ptr = self._malloc(max(nbytes, 256))
            self._device[key] = (ptr, max(nbytes, 256))
        return ptr

    def _malloc(self, nbytes: int) -> int:
        """cudaMalloc; out of device memory is a DeviceOutOfMemory (classified by error code), so
        the tiled executor can retry with a smaller strip."""
        err, *values = self._cudart.cudaMalloc(nbytes)
        if int(err) == CUDA_ERROR_MEMORY_ALLOCATION:
            raise DeviceOutOfMemory(f"cudaMalloc({nbytes}): out of device memory on {self.gpu.name}")
        return int(_call((err, *values), f"cudaMalloc({nbytes})"))

    @property
    def max_strip_bytes(self) -> int | None:
        """The tiled executor's strip budget from the device's free memory now (cudaMemGetInfo);
        the runner takes the smaller of this and the --max-memory plan's."""
        try:
            free, _ = _call(self._cudart.cudaMemGetInfo(), "cudaMemGetInfo")
        except (RuntimeError, AttributeError) as err:
            logger.warning("TensorRT backend: free device memory unknown (%s); strips from --max-memory", err)
            return None
        return max(16 << 20, int(free) // DEVICE_STRIP_SHARE)

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

    def _copy(self, dst: int, src: int, nbytes: int, kind) -> None:
        _call(self._cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync")

    def _sync(self) -> None:
        _call(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    # ---- engines ---------------------------------------------------------------------------
    def _digest(self, graph: str, layer: bool) -> str:
        """The engine key's model hash: models.json's sha256, or the layer file's (none recorded)."""
        digest = self._digests.get(graph)
        if digest is None:
            if layer:
                digest = sha256_file(self.store.layer_path(graph))
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
        """One per-layer graph of the tiled executor on one strip, on its strip-profile engine."""
        if self.layers_reason:
            if not self._layer_fallback:
                raise BackendUnsupported(f"--backend trt cannot tile: {self.layers_reason}")
            return self._cpu().run_layer(layer, x)
        with self._lock:
            shapes = {"x": tuple(int(d) for d in x.shape)}
            try:
                engine, context, _, _ = self._engine(layer, shapes, layer=True)
            except _NoEngine as err:
                raise RuntimeError(f"no {self.precision} TensorRT engine for per-layer graph {layer} ({err}); "
                                   f"run `trt-restore build-engines --models {self.store.root}`") from None
            outputs = self._execute(layer, engine, context, {"x": x}, shapes)
        return next(iter(outputs.values()))

    def _execute(self, graph: str, engine, context, inputs: dict, shapes: dict) -> dict[str, np.ndarray]:
        trt, rt = self._trt, self._cudart
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if name not in inputs:
                    raise ValueError(f"{graph}: missing input {name!r}")
                context.set_input_shape(name, shapes[name])
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
                self._copy(dptr, hptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice)
            else:
                outputs[name] = (dptr, hptr, view, nbytes)
        if not context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"{graph}: TensorRT execution failed")
        for dptr, hptr, _, nbytes in outputs.values():
            self._copy(hptr, dptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        self._sync()
        return {name: view.astype(np.float32, copy=True) for name, (_, _, view, _) in outputs.items()}

    # ---- attention steps (Triton AOT cubins, engines/kernels/launch.py) --------------------
    def masked_attention(self, theta: np.ndarray, phi: np.ndarray, g: np.ndarray, key_valid: np.ndarray,
                         chunk_bytes: int | None = None) -> np.ndarray:
        """Same contract as trt_restore.attention.masked_attention: (C, N) arrays in, (C, N) out."""
        if self.kernels is None or theta.shape[0] != 512:
            return super().masked_attention(theta, phi, g, key_valid, chunk_bytes)
        rt = self._cudart
        channels, positions = theta.shape
        with self._lock:
            ptrs = {}
            for name, value in (("theta", theta), ("phi", phi), ("g", g),
                                ("valid", key_valid.astype(np.float32))):
                hptr, view = self._host_view(("attention", name), np.float32, value.shape)
                np.copyto(view, value, casting="unsafe")
                dptr = self._device_buffer(("attention", name), view.nbytes)
                self._copy(dptr, hptr, view.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice)
                ptrs[name] = dptr
            out_bytes = channels * positions * 4
            out = self._device_buffer(("attention", "out"), out_bytes)
            ws = self._device_buffer(("attention", "workspace"), self.kernels.attention_workspace_bytes(positions))
            precision = "ieee" if self.precision == "fp32" else aot_launch.configs.DEFAULT_PRECISION  # fp16x3
            self.kernels.masked_attention(ptrs["theta"], ptrs["phi"], ptrs["g"], ptrs["valid"], out, positions, ws,
                                          int(self._stream), precision=precision)
            hptr, view = self._host_view(("attention", "out"), np.float32, (channels, positions))
            self._copy(hptr, out, out_bytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)
            self._sync()
            return view.copy()

    def patch_match_frames(self, source, target, hole: np.ndarray, size: int) -> None:
        """Tiled HR: the map goes to the GPU whole (512 channels at 1/4 scale, e.g. 1.5 GB at 12 MP)
        for the kernels; without kernels, the host-streamed default."""
        if self.kernels is None:
            return super().patch_match_frames(source, target, hole, size)
        height = source.shape[1]
        target.store.write(0, self.patch_match(source.read(0, height), hole, size))

    def patch_match(self, x: np.ndarray, hole: np.ndarray, size: int, chunk_bytes: int | None = None) -> np.ndarray:
        """Same contract as trt_restore.attention.patch_match: x (C, H, W), hole (H, W)."""
        if self.kernels is None:
            return super().patch_match(x, hole, size, chunk_bytes)
        rt = self._cudart
        channels, height, width = x.shape
        with self._lock:
            ptrs = {}
            for name, value in (("x", x), ("hole", hole.reshape(1, height, width))):
                hptr, view = self._host_view(("patch", name), np.float32, value.shape)
                np.copyto(view, value, casting="unsafe")
                dptr = self._device_buffer(("patch", name), view.nbytes)
                self._copy(dptr, hptr, view.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice)
                ptrs[name] = dptr
            nbytes = x.size * 4
            out = self._device_buffer(("patch", "out"), nbytes)
            patches = (height // size) * (width // size)
            ws = self._device_buffer(("patch", "workspace"), self.kernels.patch_workspace_bytes(patches))
            self._copy(out, ptrs["x"], nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice)
            self.kernels.patch_match(ptrs["x"], ptrs["hole"], out, channels, height, width, size, ws,
                                     int(self._stream))
            hptr, view = self._host_view(("patch", "out"), np.float32, x.shape)
            self._copy(hptr, out, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)
            self._sync()
            return view.copy()

    def describe(self) -> str:
        tiling = (f"tiling on per-layer engines (strips up to {self.max_strip_rows} rows)" if not self.layers_reason
                  else "tiling on onnxruntime" if self._layer_fallback else "no tiling (no per-layer engines)")
        cpu = f", on onnxruntime: {', '.join(sorted(self.cpu_graphs))}" if self.cpu_graphs else ""
        return (f"TensorRT {self.version} on {self.gpu.name} (sm {self.gpu.compute_capability}), "
                f"{self.precision} engines in {self.cache.root}, {self.kernel_note}, {tiling}{cpu}")

    def close(self) -> None:
        with self._lock:
            for ptr, _ in self._device.values():
                self._cudart.cudaFree(ptr)
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
