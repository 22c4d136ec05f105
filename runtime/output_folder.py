"""The output folder of a run (`restore` and `batch`): its lock, the temp files a killed run
left, and the manifest.

- one run per output folder at a time (`OutputLock`, released by the kernel if the process dies);
- `manifest.jsonl` is append-only, one JSON record per input per run, flushed as results
  arrive: status ok | skipped | failed, the error, the seconds taken, the size, the faces found
  and enhanced, which worker did it;
- `manifest.csv` is rewritten at the end of each run with the latest status of every input of
  the run; a rerun that skips a finished output keeps the facts of the run that made it.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import time
import uuid
from pathlib import Path

from .inputs import OUTPUT_MARKERS

LOCK_NAME, MANIFEST_JSONL = OUTPUT_MARKERS
MANIFEST_CSV = "manifest.csv"
CSV_FIELDS = ("input", "output", "status", "error", "seconds", "width", "height", "faces_found", "faces_enhanced",
              "mode", "worker", "run", "time")


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
            raise RuntimeError(f"{self.path.parent}: another restore or batch run is writing to this folder") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def remove_stale_temps(items: list) -> int:
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


FACTS = ("width", "height", "faces_found", "faces_enhanced")  # still true of a finished output on rerun


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


def write_csv_summary(path: Path, items: list, latest: dict[str, dict]) -> None:
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
