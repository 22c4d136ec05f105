"""`trt-restore batch`: restore big folders, in-process or on a Ray cluster with Ray Data.

Idempotent by construction:
- every input maps to exactly one output path (a folder argument's tree is mirrored with
  --recursive; two inputs mapping to the same output are refused up front);
- an output is written atomically (temp file in the same folder + rename), so it is either
  complete or absent; a finished output is never redone (unless --overwrite), so a crashed
  or killed job is simply run again and resumes where it stopped;
- temp files that a killed worker left behind are removed at the start of the next run
  (one job per output folder at a time, enforced with a lock file);
- the manifest (`OUT/manifest.jsonl`, append-only, one JSON record per input per run,
  flushed as results arrive) says per file: status ok | skipped | failed, the error, the
  time taken, the size and which worker did it; `OUT/manifest.csv` is rewritten at the end
  of each run with the latest status of every input of the run.
"""
from __future__ import annotations

import csv
import dataclasses
import fcntl
import io
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..inputs import IMAGE_SUFFIXES

LOCK_NAME = ".trt-restore-batch.lock"
MANIFEST_JSONL = "manifest.jsonl"
MANIFEST_CSV = "manifest.csv"
CSV_FIELDS = ("input", "output", "status", "error", "seconds", "width", "height", "mode", "worker", "run", "time")


@dataclass(frozen=True)
class Item:
    input: str
    output: str


@dataclass
class RestoreOptions:
    """What each worker needs to build its Restorer (picklable, sent to Ray workers)."""

    models: str
    mode: str = "quality"
    backend: str = "ort"
    faces: bool | None = None
    threads: int | None = None
    tile: str = "auto"
    max_memory: str = "4G"
    minmax: bool = False
    format: str = "png"  # output file: see io.WriteOptions
    quality: int | None = None
    output_profile: str = "srgb"
    keep_depth: bool = False
    depth_threshold: int = 2
    output_size: str = "input"  # or "network" (the original's side multiples)

    def write_options(self):
        from ..io import WriteOptions

        return WriteOptions(format=self.format, quality=self.quality, profile=self.output_profile,
                            keep_depth=self.keep_depth, depth_threshold=self.depth_threshold).validate()


# ------------------------------------------------------------------------------ planning
def is_output_folder(folder: Path) -> bool:
    """A folder a batch run has written to (its lock or manifest is there): never an input."""
    return (folder / LOCK_NAME).exists() or (folder / MANIFEST_JSONL).exists()


def _walk(folder: Path, recursive: bool, top: bool = True) -> Iterator[Path]:
    """Image files under `folder` in sorted order, streamed folder by folder; subfolders that
    hold an earlier run's outputs are left out (an -o inside the input tree)."""
    if not top and is_output_folder(folder):
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            yield Path(entry.path)
        elif recursive and entry.is_dir(follow_symlinks=False):
            subfolders.append(Path(entry.path))
    for sub in subfolders:
        yield from _walk(sub, recursive, top=False)


def plan(inputs: Iterable[str], output_dir: Path, recursive: bool = False,
         suffix: str = ".png") -> tuple[list[Item], list[str]]:
    """(items, problems). A folder's files keep their path relative to the folder under
    `output_dir` (stem + suffix); a file or glob match goes to `output_dir/stem + suffix`."""
    import glob

    items: list[Item] = []
    problems: list[str] = []
    seen_inputs: set[str] = set()
    owner: dict[str, str] = {}
    output_dir = Path(output_dir)
    out_resolved = output_dir.resolve()

    def add(photo: Path, relative: Path) -> None:
        key = str(photo.resolve())
        if key in seen_inputs:
            return
        seen_inputs.add(key)
        target = output_dir / relative.with_suffix(suffix)
        tkey = str(target.resolve())
        if tkey == key:
            problems.append(f"{photo}: output {target} would overwrite the input; choose another -o")
        elif tkey in owner:
            problems.append(f"{photo}: output {target} is already the output of {owner[tkey]}; rename one of them")
        else:
            owner[tkey] = str(photo)
            items.append(Item(str(photo), str(target)))

    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            count = 0
            for photo in _walk(path, recursive):
                if out_resolved in photo.resolve().parents:
                    continue  # never feed our own outputs back in
                add(photo, photo.relative_to(path))
                count += 1
            if count == 0:
                problems.append(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            add(path, Path(path.name))
        elif any(ch in raw for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                problems.append(f"{raw}: pattern matched no files")
            for photo in found:
                add(photo, Path(photo.name))
        else:
            problems.append(f"{path}: no such file or folder")
    return items, problems


# ------------------------------------------------------------------------------ the output folder
class OutputLock:
    """An exclusive lock on the output folder for the duration of a run (released by the
    kernel if the process dies). Raises RuntimeError when another job holds it."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK_NAME
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise RuntimeError(f"{self.path.parent}: another batch job is writing to this folder") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def remove_stale_temps(items: list[Item]) -> int:
    """Delete the temp files (`.NAME.png.XXXX.tmp`, see io.write_image) that a killed run
    left next to the outputs. Only called while holding the output lock."""
    removed = 0
    names_by_dir: dict[str, set[str]] = {}
    for item in items:
        out = Path(item.output)
        names_by_dir.setdefault(str(out.parent), set()).add(out.name)
    for folder, names in names_by_dir.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                base = entry.name[1:].rsplit(".", 2)[0]  # ".photo.png.ab12cd.tmp" -> "photo.png"
                if base in names:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
    return removed


class Manifest:
    """Append-only JSONL log of results; each line is flushed when written."""

    def __init__(self, path: Path, run_id: str):
        self.path = Path(path)
        self.run_id = run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self.handle = open(self.path, "a", encoding="utf-8")

    def _repair_tail(self) -> None:
        """A run killed while writing may leave a torn last line: end it so appends stay valid."""
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb+") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")

    def write(self, record: dict) -> None:
        record = {**record, "run": self.run_id, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


FACTS = ("seconds", "width", "height", "worker", "run", "time")  # what the run that restored a file found


def read_manifest(path: Path) -> dict[str, dict]:
    """Latest record per input (torn or garbled lines are ignored); a later "skipped" does not
    hide an earlier "ok": the file stays ok, with the facts of the run that restored it."""
    latest: dict[str, dict] = {}
    path = Path(path)
    if not path.is_file():
        return latest
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or "input" not in record:
                continue
            earlier = latest.get(record["input"])
            if record.get("status") == "skipped" and earlier is not None and earlier.get("status") == "ok" \
                    and earlier.get("output") == record.get("output"):
                continue
            latest[record["input"]] = record
    return latest


def write_csv_summary(path: Path, items: list[Item], latest: dict[str, dict]) -> None:
    """One row per input of this run with its latest status, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for item in items:
        record = latest.get(item.input) or {"input": item.input, "output": item.output, "status": "missing"}
        writer.writerow({k: ("" if record.get(k) is None else record.get(k)) for k in CSV_FIELDS})
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ the work
def restore_file(restorer, item: Item, options: RestoreOptions, worker: str) -> dict:
    """Restore one file; never raises: the record carries status and error."""
    from ..io import read_photo, write_image

    started = time.perf_counter()
    record = {"input": item.input, "output": item.output, "status": "ok", "error": None, "mode": options.mode,
              "worker": worker}
    try:
        photo = read_photo(item.input, keep_high=options.keep_depth)
        restored = restorer.restore(photo.pixels)
        write_image(item.output, restored, photo.info, options.write_options())
        record["height"], record["width"] = (int(v) for v in restored.shape[:2])
    except Exception as err:  # noqa: BLE001 - one bad photo must not stop the batch
        message = str(err)
        record["status"] = "failed"
        record["error"] = message if item.input in message else f"{item.input}: {message}"
    record["seconds"] = round(time.perf_counter() - started, 4)
    return record


def make_restorer(options: RestoreOptions):
    from ..restorer import Restorer

    return Restorer(options.models, backend=options.backend, mode=options.mode, threads=options.threads,
                    stretch=options.minmax, tile=options.tile, max_memory=options.max_memory, faces=options.faces,
                    output_size=options.output_size)


def run_local(todo: list[Item], options: RestoreOptions, workers: int = 1, restorer=None) -> Iterator[dict]:
    """Records as files finish, in-process: one shared Restorer (thread-safe), `workers`
    threads, at most 2 x workers files in flight."""
    import concurrent.futures

    restorer = restorer or make_restorer(options)
    name = f"local:{os.getpid()}"
    if workers <= 1:
        for item in todo:
            yield restore_file(restorer, item, options, name)
        return
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="batch") as pool:
        pending: set = set()
        queue = iter(todo)
        for item in queue:
            pending.add(pool.submit(restore_file, restorer, item, options, f"{name}/{len(pending)}"))
            if len(pending) >= 2 * workers:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        for future in concurrent.futures.as_completed(pending):
            yield future.result()


class RayRestoreWorker:
    """Ray Data actor: loads the models once, then restores batches of paths."""

    def __init__(self, options: dict):
        self.options = RestoreOptions(**options)
        self.restorer = make_restorer(self.options)
        import socket

        self.name = f"{socket.gethostname()}:{os.getpid()}"
        marker = os.environ.get("TRT_RESTORE_BATCH_PID_DIR")  # tests: where workers announce their pid
        if marker:
            Path(marker, f"{os.getpid()}.pid").write_text(str(os.getpid()))

    def __call__(self, batch: dict) -> dict:
        records = [restore_file(self.restorer, Item(str(i), str(o)), self.options, self.name)
                   for i, o in zip(batch["input"], batch["output"])]
        return {key: [r.get(key) for r in records] for key in
                ("input", "output", "status", "error", "seconds", "width", "height", "mode", "worker")}


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
    restored = dataset.map_batches(RayRestoreWorker, fn_constructor_kwargs={"options": dataclasses.asdict(options)},
                                   batch_size=batch_size, **pool, **resources)
    for row in restored.iter_rows():
        yield {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


# ------------------------------------------------------------------------------ progress
class Reporter:
    """A rich progress bar on a terminal, else one log line every `every` seconds."""

    def __init__(self, total: int, label: str, every: float = 10.0, stream=None):
        self.total, self.label, self.every = total, label, every
        self.stream = stream or sys.stderr
        self.done = self.failed = self.skipped = 0
        self.started = self.last = time.monotonic()
        self.progress = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=self.stream))
            self.task = self.progress.add_task(label, total=total)
            self.progress.start()

    def update(self, record: dict) -> None:
        self.done += 1
        self.failed += record["status"] == "failed"
        self.skipped += record["status"] == "skipped"
        if record["status"] == "failed":
            self._print(f"error: {record['error']}")
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=f"{self.label} ({self.failed} failed)")
        elif time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._print(self.line())

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.label}: {self.done}/{self.total} done, {self.failed} failed, {self.skipped} skipped, "
                f"{rate:.2f} files/s, ~{remaining:.0f} s left")

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


# ------------------------------------------------------------------------------ the job
@dataclass
class BatchSummary:
    total: int
    restored: int
    skipped: int
    failed: int
    problems: list[str]
    manifest: Path
    seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if (self.failed or self.problems) else 0


def run_batch(inputs: list[str], output_dir: Path, options: RestoreOptions, *, recursive: bool = False,
              overwrite: bool = False, manifest: Path | None = None, ray_address: str | None = None,
              use_ray: bool = False, workers: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
              batch_size: int = 4, progress_every: float = 10.0, stream=None, restorer=None) -> BatchSummary:
    started = time.monotonic()
    output_dir = Path(output_dir)
    items, problems = plan(inputs, output_dir, recursive, suffix=options.write_options().suffix)
    manifest_path = Path(manifest) if manifest else output_dir / MANIFEST_JSONL
    with OutputLock(output_dir):
        remove_stale_temps(items)
        earlier = read_manifest(manifest_path)
        log = Manifest(manifest_path, uuid.uuid4().hex[:12])
        reporter = Reporter(len(items), f"restoring ({options.mode})", progress_every, stream)
        counts = {"ok": 0, "skipped": 0, "failed": 0}
        try:
            todo = []
            for item in items:
                if not overwrite and os.path.exists(item.output):
                    record = {"input": item.input, "output": item.output, "status": "skipped",
                              "error": None, "mode": options.mode}
                    before = earlier.get(item.input) or {}
                    if before.get("status") == "ok" and before.get("output") == item.output:
                        record.update({k: before.get(k) for k in ("width", "height")})  # still true of the file
                    log.write(record)
                    reporter.update(record)
                    counts["skipped"] += 1
                else:
                    todo.append(item)
            if use_ray:
                records = run_ray(todo, options, ray_address, workers, num_cpus, num_gpus, batch_size)
            else:
                records = run_local(todo, options, workers, restorer) if todo else iter(())
            for record in records:
                log.write(record)
                reporter.update(record)
                counts[record["status"]] += 1
        finally:
            reporter.close()
            log.close()
        write_csv_summary(manifest_path.with_suffix(".csv"), items, read_manifest(manifest_path))
    return BatchSummary(len(items), counts["ok"], counts["skipped"], counts["failed"], problems, manifest_path,
                        time.monotonic() - started)
