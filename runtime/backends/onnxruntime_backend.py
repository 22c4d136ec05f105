"""onnxruntime CPU backend: one session per graph, created on first use and reused.

Sessions are thread-safe for concurrent `run` calls (onnxruntime guarantees this), and
session creation is guarded by a lock.

precision="int8" loads the calibrated Q/DQ model of each graph for which `trt-restore quantize`
recorded `precision: int8` (models.json, `int8` section); onnxruntime fuses its Q/DQ pairs into
integer QLinearConv kernels. The other graphs (the encoder: see its `precision_reason`), and
the per-layer graphs of tiled execution, run in fp32.

Tuning (measured with onnxruntime's profiler, benchmarks/README.md): the kernels are large
(convolutions of tens to hundreds of milliseconds), so idle intra-op threads do not spin
(`spinning=False`, `OrtOptions(spinning=True)` switches it back on): with other processes on
the cores that was 10-25% faster per graph, and there is little for spinning to win between
kernels this long. Full graph optimisation (NCHWc layouts for fp32 convolutions, Q/DQ fusion
into QLinearConv) beat the extended level.

Memory (benchmarks/results/memory_vs_original.md): by default sessions allocate plainly
(`arena=False`: no CPU arena, no memory patterns), so a run's intermediate maps are freed when
the run ends instead of staying reserved in each session's arena at its largest photo's size;
freed heap goes back to the OS after each session load and each run (runtime/backends/heap.py).
With `release_sessions=True` (the default of OrtOptions, so of the CLI, the service and
Restorer) the session of a global-stage graph is dropped right after its run: each of them
runs once per photo, so only the running stage's weights are resident, at the cost of
reloading them for the next photo (0.01-0.04 s for a VAE, 0.4 s for a 140 MiB graph, about 1 s
on busy cores; warm page cache). Graphs that run many times per photo stay loaded: the face generators
(one run per batch of faces) and the per-layer graphs of the tiled executor (one per strip).
`release(graph)` and `close()` drop sessions on demand.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..graph_precision import graph_precision
from ..model_store import ModelStore, ModelStoreError
from ..modes import SPECS
from .base import Backend
from .heap import release_free_heap

PRECISIONS = ("fp32", "int8")
ONCE_PER_PHOTO = frozenset(graph for spec in SPECS.values() for graph in spec.graphs)  # released after a run


class OrtBackend(Backend):
    name = "ort"
    runs_layers = True

    def __init__(self, models_dir, threads: int | None = None, precision: str = "fp32", spinning: bool = False,
                 arena: bool = False, release_sessions: bool = False):
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"onnxruntime precision must be one of {PRECISIONS}, got {precision!r}")
        self._ort = ort
        self.store = models_dir if isinstance(models_dir, ModelStore) else ModelStore.open(models_dir)
        self.threads = threads or len(os.sched_getaffinity(0))
        self.precision = precision
        self.spinning = bool(spinning)
        self.arena = bool(arena)
        self.release_sessions = bool(release_sessions)
        self.loaded: set[str] = set()  # every graph whose session was ever created (kept or released since)
        int8 = self.store.manifest.get("int8", {}).get("graphs", {}) if precision == "int8" else {}
        # graphs that run their Q/DQ model under int8: the rule the TensorRT builder follows too
        self._int8 = {g: e for g, e in int8.items()
                      if graph_precision(self.store.manifest, g, "int8", "onnxruntime").precision == "int8"}
        if precision == "int8" and not int8:
            raise ModelStoreError(f"{self.store.root}: no INT8 models; make them with `trt-restore calibrate-data "
                                  f"CALDIR` and `trt-restore quantize -c CALDIR -m {self.store.root}`")
        self._sessions: dict = {}
        self._lock = threading.Lock()

    def graph_file(self, graph: str):
        """The ONNX file this backend runs for `graph`: its Q/DQ model under int8 when there is one."""
        entry = self._int8.get(graph)
        if not entry or not entry.get("file"):
            return self.store.graph_path(graph)
        fp32 = self.store.manifest.get("graphs", {}).get(graph, {})
        if entry.get("source_sha256") != fp32.get("sha256"):
            raise ModelStoreError(f"{self.store.root}: the INT8 model of {graph} was made from another export "
                                  f"of the graph; re-run `trt-restore quantize`")
        path = self.store.root / entry["file"]
        if not path.is_file():
            raise ModelStoreError(f"{path}: listed in models.json (int8) but missing; re-run `trt-restore quantize`")
        return path

    def session_options(self, plain: bool):
        """This backend's onnxruntime session settings; `plain`: no arena, no memory patterns (an
        arena keeps a session's largest run reserved; plain allocations are freed after a run)."""
        options = self._ort.SessionOptions()
        if plain:
            options.enable_cpu_mem_arena = False
            options.enable_mem_pattern = False
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return options

    def _session(self, graph: str, path=None):
        with self._lock:
            if graph not in self._sessions:
                options = self.session_options(plain=path is not None or not self.arena)
                self._sessions[graph] = self._ort.InferenceSession(
                    str(path or self.graph_file(graph)), options, providers=["CPUExecutionProvider"])
                self.loaded.add(graph)
                if path is None:
                    release_free_heap()  # graph optimisation's transient weight copies
            return self._sessions[graph]

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session(graph)
        names = [o.name for o in session.get_outputs()]
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        outputs = dict(zip(names, session.run(names, feed)))
        del feed, session
        if self.release_sessions and graph in ONCE_PER_PHOTO:
            self.release(graph)  # also gives the run's intermediate maps back
        elif not self.arena:
            release_free_heap()  # the run's intermediate maps
        return outputs

    @property
    def resident_graphs(self) -> frozenset[str]:
        """Graphs whose sessions are loaded now (`loaded`: ever loaded)."""
        with self._lock:
            return frozenset(self._sessions)

    def release(self, graph: str) -> None:
        """Drop the session of `graph` (a stage that will not run again soon); it reloads on next use."""
        with self._lock:
            session = self._sessions.pop(graph, None)
        if session is not None:
            del session
            release_free_heap()

    def close(self) -> None:
        """Drop every session and give their memory back."""
        with self._lock:
            self._sessions.clear()
        release_free_heap()

    def run_layer(self, layer: str, x: np.ndarray) -> np.ndarray:
        """One per-layer graph of the tiled executor on one strip."""
        session = self._session("layer:" + layer, self.store.layer_path(layer))
        return session.run(None, {"x": x})[0]

    def describe(self) -> str:
        precision = ""
        if self.precision == "int8":
            precision = f", INT8 Q/DQ for {len(self._int8)} graph(s) (others fp32)"
        return (f"onnxruntime {self._ort.__version__} CPU, {self.threads} thread(s){precision}, "
                f"models in {self.store.root}")
