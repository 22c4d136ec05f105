"""The inference engine behind the service: a bounded queue and one worker per backend context.

Framework-free (threads and `concurrent.futures`), so the FastAPI app, the Ray Serve
deployment and tests share it.

- `submit()` never blocks: when `max_queue` jobs are already waiting it raises `QueueFull`
  with a `retry_after` estimate (the HTTP layer answers 429 + Retry-After).
- Each worker thread owns one Restorer, i.e. one backend context, that serves every mode
  and face setting (sessions and face stages load on first use): onnxruntime sessions with
  `threads // workers` intra-op threads on the CPU, one CUDA context per worker on a GPU. Workers are started by `start()`, which also
  loads the preloaded modes and warms them up; `ready` turns true when all workers are warm.
- `shutdown(grace)` stops accepting work at once (`ShuttingDown`), lets the workers finish
  the running jobs and whatever else is queued within `grace` seconds, then rejects what is
  still queued *and* what is still running (the worker stops at its next segment boundary).
  A job is therefore always either finished or rejected, never lost, and shutdown returns
  within the grace whatever state the workers are in. `abort()` (a second signal) does the
  same at once.
- `cancel(future)` (the client went away) drops a queued job from the queue at once and
  stops a running one at its next segment boundary: every backend call of a worker (graph
  segments, per-layer graphs, attention, patch match) checks its job's cancel flag and the
  per-job time limit (`job_timeout`).
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


class JobStopped(RuntimeError):
    """A running job was stopped at a segment boundary (cancelled, timed out, shutting down)."""


class JobTimedOut(JobStopped):
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
    tile: str = "auto"  # or a run_options.TilePolicy (what the CLI's --tile gives)
    max_memory: str = "4G"  # or bytes (what the CLI's --max-memory gives)
    warmup_side: int = 64
    job_timeout: float | None = 600.0  # seconds one photo may run before it is stopped (None: no limit)
    keep_sessions: bool = True  # onnxruntime sessions stay warm between requests (False: least memory)
    face_detector: str | None = None  # None: the Restorer's default; chosen by licences.choose_detector
    face_detector_model: Path | None = None
    licence_note: str = ""  # which face model runs and under which licence (/v1/info)
    restorer_factory: object = None  # tests: callable(mode, faces, threads) -> Restorer-like (one per worker)


@dataclass(eq=False)  # identity semantics: jobs live in sets
class Job:
    image: np.ndarray
    mode: str
    faces: bool | None
    mask: np.ndarray | None = None
    tag: str = ""
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # checked at every segment boundary
    stop_reason: str = ""
    deadline: float | None = None  # time.monotonic() after which the job is stopped


_current = threading.local()  # the job a worker thread is running (for the segment-boundary check)


def check_current_job() -> None:
    """Raise JobStopped when the calling worker's job was cancelled or ran out of time."""
    job = getattr(_current, "job", None)
    if job is None:
        return
    if job.stop.is_set():
        raise JobStopped(job.stop_reason or "the job was cancelled")
    if job.deadline is not None and time.monotonic() > job.deadline:
        raise JobTimedOut("the photo took longer than the per-photo time limit")


def guard_backend(backend) -> None:
    """Make every graph segment of `backend` a cancellation point (wraps run and run_layer
    on the instance; the pipeline code stays unaware)."""
    if backend is None or getattr(backend, "_job_guarded", False):
        return
    for name in ("run", "run_layer", "masked_attention", "patch_match"):
        method = getattr(backend, name, None)
        if method is None:
            continue

        def guarded(*args, _method=method, **kwargs):
            check_current_job()
            return _method(*args, **kwargs)

        setattr(backend, name, guarded)
    backend._job_guarded = True


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
        self._active: set[Job] = set()  # jobs the workers are running now
        self._abort = threading.Event()  # a second signal: stop draining at once
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
            self._shutdown_done.wait(grace + 5.0)
            return 0
        try:
            return self._drain(grace)
        finally:
            self._shutdown_done.set()

    def abort(self) -> None:
        """Stop now (a second signal): what is queued or running is answered ShuttingDown
        at once; running jobs stop at their next segment boundary."""
        self._abort.set()  # the drain loop polls it every 0.1 s; nothing here blocks (signal handlers call it)
        if not self._shutdown_started:
            threading.Thread(target=self.shutdown, args=(0.0,), name="abort", daemon=True).start()

    def _drain(self, grace: float) -> int:
        deadline = time.monotonic() + grace
        with self._cond:
            while (self._pending or self._running) and time.monotonic() < deadline and not self._abort.is_set():
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            rejected = list(self._pending)
            self._pending.clear()
            abandoned = list(self._active)
            self._stopping = True
            self._cond.notify_all()
        for job in rejected:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown("the service is shutting down; the request was not run"))
        for job in abandoned:  # still running after the grace: answered now, stopped at the next boundary
            self._stop_job(job, "the service is shutting down")
            _resolve(job.future, exception=ShuttingDown("the service is shutting down; the photo did not finish "
                                                        "within the shutdown grace period"))
        self.counters["rejected_at_shutdown"] += len(rejected) + len(abandoned)
        log.warning("drained: %d photos completed since start, %d rejected at shutdown", self.counters["completed"],
                    len(rejected) + len(abandoned))
        for worker in self._workers:  # daemon threads: a worker stuck inside one segment is not waited for
            worker.join(timeout=min(1.0, max(0.0, deadline - time.monotonic())) + 0.5)
        return len(rejected) + len(abandoned)

    @staticmethod
    def _stop_job(job: Job, reason: str) -> None:
        job.stop_reason = job.stop_reason or reason
        job.stop.set()

    def cancel(self, future: concurrent.futures.Future, reason: str = "the client went away") -> bool:
        """Cancel the job of `future`: a queued one leaves the queue now (its slot is free at
        once), a running one stops at its next segment boundary. True if it was not finished."""
        with self._cond:
            for job in self._pending:
                if job.future is future:
                    self._pending.remove(job)
                    job.future.cancel()
                    self.counters["cancelled"] += 1
                    self._cond.notify_all()
                    return True
            for job in self._active:
                if job.future is future:
                    self._stop_job(job, reason)
                    return True
        return False

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
        """This worker's one Restorer: one backend for every mode and face setting (`mode` and
        `faces` are only its defaults)."""
        if self.config.restorer_factory is not None:
            restorer = self.config.restorer_factory(mode, faces, threads)
        else:
            from ..restorer import Restorer

            restorer = Restorer(self.config.models, backend=self.config.backend, mode=mode, threads=threads,
                                tile=self.config.tile, max_memory=self.config.max_memory, faces=faces,
                                face_detector=self.config.face_detector,
                                face_detector_model=self.config.face_detector_model,
                                keep_sessions=self.config.keep_sessions)
        guard_backend(getattr(restorer, "backend", None))
        return restorer

    def _load(self, index: int, threads: int):
        """This worker's Restorer, with the preloaded modes checked and warmed up on a small photo."""
        restorer = None
        default_faces = self._default_faces()
        available = []
        for mode in self.config.modes:
            try:
                if restorer is None:
                    restorer = self._make_restorer(mode, default_faces, threads)
                face_stage, note = restorer.face_stage(mode, default_faces)
            except FileNotFoundError as err:
                if self.config.faces == "on" and "face" in str(err).lower():
                    raise
                log.warning("worker %d: %s mode unavailable: %s", index, mode, err)
                continue
            if index == 0:
                self.faces_available[mode] = face_stage is not None
                self.face_notes[mode] = note
            available.append(mode)
            side = max(self.config.warmup_side, 32)
            ramp = np.linspace(0, 255, side * side * 3, dtype=np.float32).reshape(side, side, 3)
            started = time.perf_counter()
            restorer.restore_with_stages(ramp.astype(np.uint8), mode=mode, faces=default_faces)
            log.info("worker %d: %s mode loaded and warmed up (%.2f s)", index, mode, time.perf_counter() - started)
        if not available:
            raise FileNotFoundError(f"{self.config.models}: no restoration mode can be loaded "
                                    f"(asked for {', '.join(self.config.modes)}; run `trt-restore export`)")
        if index == 0:
            self.modes_available = tuple(available)
            backend = getattr(restorer, "backend", None)
            self.backend_description = backend.describe() if backend is not None else ""
        return restorer

    def _default_faces(self) -> bool | None:
        return {"auto": None, "on": True, "off": False}[self.config.faces]

    def _faces_for(self, job: Job) -> tuple[bool, bool | None]:
        """(faces on?, the Restorer's setting for it): the mode's default reuses its face stage."""
        default = self.faces_available.get(job.mode, False)
        faces_on = default if job.faces is None else bool(job.faces)
        return faces_on, (self._default_faces() if faces_on == default else faces_on)

    def _work(self, index: int, threads: int) -> None:
        try:
            restorer = self._load(index, threads)
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
                self._active.add(job)
            job.started = time.perf_counter()
            if self.config.job_timeout:
                job.deadline = time.monotonic() + self.config.job_timeout
            _current.job = job
            try:
                faces_on, setting = self._faces_for(job)
                result = restorer.restore_with_stages(job.image, mask=job.mask, mode=job.mode, faces=setting)
                check_current_job()  # a stop requested during the last segment still counts
                run_time = time.perf_counter() - job.started
                if _resolve(job.future, JobResult(result, job.started - job.submitted, run_time, index, faces_on)):
                    self._durations.append(run_time)
                    self.counters["completed"] += 1
            except JobStopped as err:
                self.counters["timed_out" if isinstance(err, JobTimedOut) else "stopped"] += 1
                log.info("worker %d: job stopped at a segment boundary: %s", index, err)
                _resolve(job.future, exception=err)
            except Exception as err:  # noqa: BLE001 - delivered to the waiting request
                self.counters["failed"] += 1
                _resolve(job.future, exception=err)
            finally:
                _current.job = None
                job.image = job.mask = None
                with self._cond:
                    self._running -= 1
                    self._active.discard(job)
                    self._cond.notify_all()


def _resolve(future: concurrent.futures.Future, result=None, exception: BaseException | None = None) -> bool:
    """Set a future's outcome unless it already has one (shutdown may have answered it)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
        return True
    except concurrent.futures.InvalidStateError:
        return False
