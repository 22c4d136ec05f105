"""The inference engine behind the service: a bounded queue and one worker per backend context.

Framework-free (threads and `concurrent.futures`), so the FastAPI app, the Ray Serve
deployment and tests share it.

- `submit()` never blocks: when `max_queue` jobs are already waiting it raises `QueueFull`
  with a `retry_after` estimate (the HTTP layer answers 429 + Retry-After).
- Each worker thread owns its Restorers (one per mode and face setting), i.e. its own
  backend context: onnxruntime sessions with `threads // workers` intra-op threads on the
  CPU, one CUDA context per worker on a GPU. Workers are started by `start()`, which also
  loads the preloaded modes and warms them up; `ready` turns true when all workers are warm.
- `shutdown(grace)` stops accepting work at once (`ShuttingDown`), lets the workers finish
  the running jobs and whatever else is queued within `grace` seconds, then rejects what is
  still queued. A job is therefore always either finished or rejected, never lost.
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("trt_restore.serve")

MODES = ("quality", "scratch", "hr")


class QueueFull(RuntimeError):
    def __init__(self, retry_after: float, depth: int):
        super().__init__(f"the queue is full ({depth} waiting); retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class ShuttingDown(RuntimeError):
    pass


class NotReady(RuntimeError):
    pass


class OptionUnavailable(ValueError):
    """A request asked for a mode or the face stage that this service cannot run."""


@dataclass
class EngineConfig:
    models: Path
    backend: str = "ort"
    workers: int = 1
    threads: int | None = None  # onnxruntime threads per worker (default: cores // workers)
    max_queue: int = 8  # jobs waiting for a busy worker (not counting the ones running)
    modes: tuple[str, ...] = MODES  # loaded and warmed at start (others load on first use, if exported)
    faces: str = "auto"  # auto | on | off: the face stage's availability on this service
    tile: str = "auto"
    max_memory: str = "4G"
    warmup_side: int = 64
    restorer_factory: object = None  # tests: callable(mode, faces, threads) -> Restorer-like


@dataclass
class Job:
    image: np.ndarray
    mode: str
    faces: bool | None
    mask: np.ndarray | None = None
    tag: str = ""
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None


@dataclass
class JobResult:
    result: object  # RestoreResult (restored, mask, painted, timings, ...)
    queue_wait: float
    run_time: float
    worker: int
    faces: bool


class Engine:
    def __init__(self, config: EngineConfig):
        if config.workers < 1:
            raise ValueError("workers must be >= 1")
        unknown = [m for m in config.modes if m not in MODES]
        if unknown:
            raise ValueError(f"unknown mode(s) {unknown}; choose from {MODES}")
        if config.faces not in ("auto", "on", "off"):
            raise ValueError("faces must be auto, on or off")
        self.config = config
        self._pending: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._accepting = False
        self._stopping = False
        self._shutdown_started = False
        self._shutdown_done = threading.Event()
        self._workers: list[threading.Thread] = []
        self._ready = threading.Event()
        self._warm = 0
        self._running = 0
        self._durations: collections.deque[float] = collections.deque(maxlen=32)
        self.error: str | None = None  # why the engine could not start
        self.faces_available: dict[str, bool] = {}
        self.face_notes: dict[str, str] = {}
        self.modes_available: tuple[str, ...] = ()
        self.backend_description = ""
        self.counters = collections.Counter()

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Start the worker threads (loading and warm-up happen on them, in the background)."""
        threads = self.config.threads or max(1, len(os.sched_getaffinity(0)) // self.config.workers)
        self._accepting = True
        for index in range(self.config.workers):
            worker = threading.Thread(target=self._work, args=(index, threads), name=f"restore-worker-{index}",
                                      daemon=True)
            worker.start()
            self._workers.append(worker)

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._accepting and self.error is None

    def wait_ready(self, timeout: float | None = None) -> bool:
        self._ready.wait(timeout)
        return self.ready

    @property
    def accepting(self) -> bool:
        return self._accepting

    def shutdown(self, grace: float = 30.0) -> int:
        """Stop accepting; finish queued and running jobs for up to `grace` seconds, then
        reject whatever is still queued. Returns the number of rejected jobs. Safe to call
        more than once (a signal handler and the server's own shutdown both do): later calls
        wait for the first one to finish."""
        with self._cond:
            self._accepting = False
            first = not self._shutdown_started
            self._shutdown_started = True
            self._cond.notify_all()
        if not first:
            self._shutdown_done.wait(grace + 10.0)
            return 0
        try:
            return self._drain(grace)
        finally:
            self._shutdown_done.set()

    def _drain(self, grace: float) -> int:
        deadline = time.monotonic() + grace
        with self._cond:
            while (self._pending or self._running) and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            rejected = list(self._pending)
            self._pending.clear()
            self._stopping = True
            self._cond.notify_all()
        for job in rejected:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown("the service is shutting down; the request was not run"))
        self.counters["rejected_at_shutdown"] += len(rejected)
        log.warning("drained: %d photos completed since start, %d rejected at shutdown", self.counters["completed"],
                    len(rejected))
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
        return len(rejected)

    # ---------------------------------------------------------------- submitting
    def retry_after(self) -> float:
        """Seconds until a queue slot is likely free: mean job time x queue / workers."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 2.0
        return max(1.0, mean * (len(self._pending) + 1) / self.config.workers)

    def check_capacity(self) -> None:
        """Cheap early check (before a request body is read): raises like submit would."""
        if not self._accepting:
            raise ShuttingDown("the service is shutting down")
        if self.error is not None:
            raise NotReady(self.error)
        if not self._ready.is_set():
            raise NotReady("models are still loading")
        idle = max(0, self.config.workers - self._running)  # jobs that a free worker takes at once
        if len(self._pending) >= self.config.max_queue + idle:
            raise QueueFull(self.retry_after(), len(self._pending))

    def check_options(self, mode: str, faces: bool | None) -> None:
        if mode not in self.modes_available:
            raise OptionUnavailable(f"{mode} mode is not available on this service (models loaded: "
                                    f"{', '.join(self.modes_available) or 'none'})")
        if faces and not self.faces_available.get(mode, False):
            raise OptionUnavailable(f"face enhancement is not available in {mode} mode: "
                                    f"{self.face_notes.get(mode, 'faces: off')}")

    def submit(self, image: np.ndarray, mode: str = "quality", faces: bool | None = None,
               mask: np.ndarray | None = None, tag: str = "") -> concurrent.futures.Future:
        """Queue one photo; the future resolves to a JobResult (or raises the restore error)."""
        self.check_options(mode, faces)
        job = Job(image=image, mode=mode, faces=faces, mask=mask, tag=tag)
        with self._cond:
            self.check_capacity()
            self._pending.append(job)
            self.counters["submitted"] += 1
            self._cond.notify()
        return job.future

    def stats(self) -> dict:
        return {"queued": len(self._pending), "running": self._running, "workers": self.config.workers,
                "max_queue": self.config.max_queue, "ready": self.ready, "accepting": self._accepting,
                **{k: v for k, v in self.counters.items()}}

    # ---------------------------------------------------------------- workers
    def _make_restorer(self, mode: str, faces: bool | None, threads: int):
        if self.config.restorer_factory is not None:
            return self.config.restorer_factory(mode, faces, threads)
        from ..restorer import Restorer

        return Restorer(self.config.models, backend=self.config.backend, mode=mode, threads=threads,
                        tile=self.config.tile, max_memory=self.config.max_memory, faces=faces)

    def _load(self, index: int, threads: int) -> dict:
        """This worker's restorers for the preloaded modes, warmed up on a small photo."""
        restorers: dict = {}
        default_faces = {"auto": None, "on": True, "off": False}[self.config.faces]
        available = []
        for mode in self.config.modes:
            try:
                restorer = self._make_restorer(mode, default_faces, threads)
            except FileNotFoundError as err:
                if self.config.faces == "on" and "face" in str(err).lower():
                    raise
                log.warning("worker %d: %s mode unavailable: %s", index, mode, err)
                continue
            faces_on = getattr(restorer, "_faces", None) is not None
            restorers[(mode, faces_on)] = restorer
            if index == 0:
                self.faces_available[mode] = faces_on
                self.face_notes[mode] = getattr(restorer, "face_note", "faces: off")
            available.append(mode)
            side = max(self.config.warmup_side, 32)
            ramp = np.linspace(0, 255, side * side * 3, dtype=np.float32).reshape(side, side, 3)
            started = time.perf_counter()
            restorer.restore(ramp.astype(np.uint8))
            log.info("worker %d: %s mode loaded and warmed up (%.2f s)", index, mode, time.perf_counter() - started)
        if not available:
            raise FileNotFoundError(f"{self.config.models}: no restoration mode can be loaded "
                                    f"(asked for {', '.join(self.config.modes)}; run `trt-restore export`)")
        if index == 0:
            self.modes_available = tuple(available)
            backend = getattr(next(iter(restorers.values())), "backend", None)
            self.backend_description = backend.describe() if backend is not None else ""
        return restorers

    def _restorer_for(self, restorers: dict, job: Job, threads: int):
        default = self.faces_available.get(job.mode, False)
        faces_on = default if job.faces is None else bool(job.faces)
        key = (job.mode, faces_on)
        if key not in restorers:  # the non-default face setting: built on first use
            restorers[key] = self._make_restorer(job.mode, faces_on, threads)
        return restorers[key], faces_on

    def _work(self, index: int, threads: int) -> None:
        try:
            restorers = self._load(index, threads)
        except Exception as err:  # noqa: BLE001 - reported by /readyz and the CLI
            log.error("worker %d could not load the models: %s", index, err)
            self.error = f"worker {index}: {err}"
            self._ready.set()
            return
        with self._cond:
            self._warm += 1
            if self._warm == self.config.workers:
                self._ready.set()
        while True:
            with self._cond:
                while not self._pending and not self._stopping and self._accepting:
                    self._cond.wait(0.5)
                if not self._pending:
                    return  # shutting down and nothing left to do
                job = self._pending.popleft()
                if not job.future.set_running_or_notify_cancel():  # the client went away while queued
                    self.counters["cancelled"] += 1
                    self._cond.notify_all()
                    continue
                self._running += 1
            job.started = time.perf_counter()
            try:
                restorer, faces_on = self._restorer_for(restorers, job, threads)
                result = restorer.restore_with_stages(job.image, mask=job.mask)
                run_time = time.perf_counter() - job.started
                job.future.set_result(JobResult(result, job.started - job.submitted, run_time, index, faces_on))
                self._durations.append(run_time)
                self.counters["completed"] += 1
            except Exception as err:  # noqa: BLE001 - delivered to the waiting request
                self.counters["failed"] += 1
                job.future.set_exception(err)
            finally:
                job.image = job.mask = None
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
