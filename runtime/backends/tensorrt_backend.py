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
  driver binding, is logged in one line and the steps run in numpy like the CPU backend.
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

from ..engines.cache import EngineCache, model_digest
from ..engines.environment import (GpuUnavailable, TensorRTUnavailable, _cudart, gpu_info, import_tensorrt,
                                   tensorrt_version)
from ..engines import kernels
from ..engines.kernels import launch as aot_launch
from ..engines.profiles import Profile
from ..model_store import GRAPHS_FOR_MODE, ModelStore, ModelStoreError
from .base import Backend


class TrtBackendUnavailable(RuntimeError):
    """The TensorRT backend cannot run here; str() says why in one line."""


class _NoEngine(LookupError):
    """No cached engine of any profile for a graph."""


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
                 trt=None, cudart=None, gpu=None):
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
        self.kernels = None
        try:
            major, minor = (int(v) for v in self.gpu.compute_capability.split("."))
            self.kernels = aot_launch.AotKernels(major, minor)
            self.kernel_note = f"attention on the GPU ({self.kernels.describe()})"
        except (aot_launch.KernelUnavailable, OSError, ValueError) as err:
            self.kernel_note = f"attention in numpy ({err})"
            logger.warning("TensorRT backend: %s", self.kernel_note)
        self._stream = _call(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._engines: dict[str, tuple] = {}
        self._device: dict[tuple[str, str], tuple[int, int]] = {}
        self._host: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._cpu_backend = None
        self._digests: dict[str, str] = {}
        self.cpu_graphs: set[str] = set()
        self.fallback_reason = None

    # ---- buffers ---------------------------------------------------------------------------
    def _device_buffer(self, key: tuple[str, str], nbytes: int) -> int:
        ptr, size = self._device.get(key, (0, 0))
        if size < nbytes:
            if ptr:
                _call(self._cudart.cudaFree(ptr), "cudaFree")
            ptr = int(_call(self._cudart.cudaMalloc(max(nbytes, 256)), f"cudaMalloc({nbytes})"))
            self._device[key] = (ptr, max(nbytes, 256))
        return ptr

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
    def _engine(self, graph: str, shapes: dict):
        loaded = self._engines.get(graph)
        if loaded is not None and loaded[2].covers(shapes):
            return loaded
        entry = self.store.manifest.get("graphs", {}).get(graph)
        if entry is None:
            raise ModelStoreError(f"{self.store.root}: graph {graph!r} was not exported")
        digest = self._digests.get(graph)
        if digest is None:
            digest = self._digests[graph] = model_digest(self.store.root, entry, self.precision)
        path, why = self.cache.find(graph, digest, self.precision, self.gpu.name, self.gpu.compute_capability,
                                    self.version, input_shapes=shapes)
        if path is None and self.cache.find(graph, digest, self.precision, self.gpu.name,
                                            self.gpu.compute_capability, self.version, verify=False)[0] is None:
            raise _NoEngine(why)
        if path is None:
            raise RuntimeError(f"no TensorRT engine for {graph} at {shapes}: {why}; "
                               f"run `trt-restore build-engines` with a larger --max-size")
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise RuntimeError(f"{path}: TensorRT could not deserialise the plan")
        context = engine.create_execution_context()
        profile = Profile.from_json(json.loads(path.with_suffix(".json").read_text())["profile"])
        loaded = (engine, context, profile, path)
        self._engines[graph] = loaded
        return loaded

    def _cpu(self):
        if self._cpu_backend is None:
            from .onnxruntime_backend import OrtBackend

            self._cpu_backend = OrtBackend(self.store)
        return self._cpu_backend

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the graph's engine. Graphs without any engine for this GPU (the tiled executor's
        per-layer graphs, a face generator that was not built) run on onnxruntime instead, and
        `cpu_graphs` lists them; a shape outside every cached profile is an error."""
        if graph not in self.cpu_graphs:
            with self._lock:
                shapes = {name: tuple(int(d) for d in value.shape) for name, value in inputs.items()}
                try:
                    engine, context, _, _ = self._engine(graph, shapes)
                except _NoEngine:
                    self.cpu_graphs.add(graph)
                    logger.warning("no TensorRT engine for %s on this GPU: running it with onnxruntime", graph)
                else:
                    return self._execute(graph, engine, context, inputs, shapes)
        return self._cpu().run(graph, inputs)

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
        return (f"TensorRT {self.version} on {self.gpu.name} (sm {self.gpu.compute_capability}), "
                f"{self.precision} engines in {self.cache.root}, {self.kernel_note}")

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
