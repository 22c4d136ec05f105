"""onnxruntime CPU backend: one session per graph, created on first use and reused.

Sessions are thread-safe for concurrent `run` calls (onnxruntime guarantees this), and
session creation is guarded by a lock.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..model_store import ModelStore


class OrtBackend:
    name = "ort"

    def __init__(self, models_dir, threads: int | None = None):
        import onnxruntime as ort

        self._ort = ort
        self.store = models_dir if isinstance(models_dir, ModelStore) else ModelStore.open(models_dir)
        self.threads = threads or len(os.sched_getaffinity(0))
        self._sessions: dict = {}
        self._lock = threading.Lock()

    def _session(self, graph: str, path=None):
        with self._lock:
            if graph not in self._sessions:
                options = self._ort.SessionOptions()
                if path is not None:
                    # per-layer graphs of the tiled executor: dozens of sessions, each would keep
                    # an arena as large as its biggest strip; plain allocations return memory
                    options.enable_cpu_mem_arena = False
                    options.enable_mem_pattern = False
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                self._sessions[graph] = self._ort.InferenceSession(
                    str(path or self.store.graph_path(graph)), options, providers=["CPUExecutionProvider"])
            return self._sessions[graph]

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session(graph)
        names = [o.name for o in session.get_outputs()]
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return dict(zip(names, session.run(names, feed)))

    def run_layer(self, layer: str, x: np.ndarray) -> np.ndarray:
        """One per-layer graph of the tiled executor on one strip."""
        session = self._session("layer:" + layer, self.store.layer_path(layer))
        return session.run(None, {"x": x})[0]

    def describe(self) -> str:
        return f"onnxruntime {self._ort.__version__} CPU, {self.threads} thread(s), models in {self.store.root}"
