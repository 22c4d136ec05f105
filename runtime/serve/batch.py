"""`trt-restore batch`: restore big folders, in-process (worker threads) or on a Ray cluster
with Ray Data, through the same folder pipeline and per-photo core as `restore`
(runtime/folder_pipeline.py, runtime/photo_job.py): one output per input, atomic writes,
skip-and-resume, the output folder's lock and its manifest.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from ..folder_pipeline import FolderRun, RunSummary
from ..folder_progress import Reporter
from ..inputs import Item, plan  # noqa: F401 - re-exported: the batch's planning API
from ..output_folder import (  # noqa: F401
    CSV_FIELDS,
    LOCK_NAME,
    OutputLock,
    read_manifest,
    remove_stale_temps,
)
from ..photo_job import RestoreOptions, restore_photo

BatchSummary = RunSummary
RECORD_KEYS = tuple(k for k in CSV_FIELDS if k not in ("run", "time"))


def run_local(todo: list[Item], options: RestoreOptions, workers: int = 1, restorer=None,
              on_stage=None) -> Iterator[dict]:
    """Records as files finish, in-process: one shared Restorer (thread-safe), `workers`
    threads, at most 2 x workers files in flight. `on_stage(item, name)`: stage progress
    (one worker only)."""
    import concurrent.futures

    restorer = restorer or options.make_restorer()
    name = f"local:{os.getpid()}"
    if workers <= 1:
        for item in todo:
            stage = (lambda stage_name, item=item: on_stage(item, stage_name)) if on_stage else None
            yield restore_photo(restorer, item, options, name, stage)
        return
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="batch") as pool:
        pending: set = set()
        queue = iter(todo)
        for item in queue:
            pending.add(pool.submit(restore_photo, restorer, item, options, f"{name}/{len(pending)}"))
            if len(pending) >= 2 * workers:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        for future in concurrent.futures.as_completed(pending):
            yield future.result()


class RayRestoreWorker:
    """Ray Data actor: loads the models once, then restores batches of paths."""

    def __init__(self, options: RestoreOptions):
        self.options = options
        self.restorer = options.make_restorer()
        import socket

        self.name = f"{socket.gethostname()}:{os.getpid()}"
        marker = os.environ.get("TRT_RESTORE_BATCH_PID_DIR")  # tests: where workers announce their pid
        if marker:
            Path(marker, f"{os.getpid()}.pid").write_text(str(os.getpid()))

    def __call__(self, batch: dict) -> dict:
        records = [restore_photo(self.restorer, Item(str(i), str(o)), self.options, self.name)
                   for i, o in zip(batch["input"], batch["output"])]
        return {key: [r.get(key) for r in records] for key in RECORD_KEYS}


def run_ray(todo: list[Item], options: RestoreOptions, address: str | None, workers: int, num_cpus: float,
            num_gpus: float, batch_size: int = 4) -> Iterator[dict]:
    """Records as files finish, on a Ray cluster: a Ray Data pipeline of `workers` actors
    (each with `num_cpus` CPUs / `num_gpus` GPUs and its own models). Paths must be valid
    on every node (a shared file system)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, log_to_driver=False, include_dashboard=False)
    if not todo:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_stats_logs = False
    rows = [{"input": item.input, "output": item.output} for item in todo]
    blocks = max(1, min(len(rows) // max(batch_size, 1), 10_000))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    resources = {"num_cpus": num_cpus}
    if num_gpus:
        resources["num_gpus"] = num_gpus
    # Ray Data restarts a dead actor and retries its batch (max_restarts=-1 is its default for
    # actor pools); whatever is lost anyway is redone by the next run, as the outputs say
    try:
        pool = {"compute": ray.data.ActorPoolStrategy(size=workers)}
    except TypeError:  # older Ray
        pool = {"concurrency": workers}
    restored = dataset.map_batches(RayRestoreWorker, fn_constructor_kwargs={"options": options},
                                   batch_size=batch_size, **pool, **resources)
    for row in restored.iter_rows():
        yield {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def run_batch(inputs: list[str], output_dir: Path, options: RestoreOptions, *, recursive: bool = False,
              manifest: Path | None = None, **how) -> RunSummary:
    """Plan `inputs`, then `run_planned` (raises ValueError when two inputs share an output)."""
    return run_planned(FolderRun.plan(inputs, output_dir, options, recursive, manifest), options, **how)


def run_planned(run: FolderRun, options: RestoreOptions, *, overwrite: bool = False, ray_address: str | None = None,
                use_ray: bool = False, workers: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                batch_size: int = 4, progress_every: float = 10.0, stream=None, restorer=None) -> RunSummary:
    """The folder pipeline with worker threads (sharing `restorer`, else one built here) or Ray actors."""
    def restore(todo: list[Item]):
        if use_ray:
            return run_ray(todo, options, ray_address, workers, num_cpus, num_gpus, batch_size)
        return run_local(todo, options, workers, restorer)

    reporter = Reporter(len(run.items), f"restoring ({options.mode})", progress_every, stream)
    try:
        return run.run(restore, overwrite, reporter)
    finally:
        reporter.close()
