"""The folder pipeline behind `restore` and `batch`: plan the inputs, refuse collisions, then
under the output folder's lock skip what is done, restore the rest (records from any worker
strategy: in-process, threads, Ray), log every record to the manifest, and summarise.

Idempotent: an output is written atomically and never redone without --overwrite, so a
killed run is simply run again; temp files it left are removed first, and the manifest keeps
the facts of the run that restored a file.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .inputs import Collision, Item, plan
from .output_folder import (
    FACTS,
    MANIFEST_JSONL,
    Manifest,
    OutputLock,
    read_manifest,
    remove_stale_temps,
    write_csv_summary,
)


@dataclass
class RunSummary:
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

    def line(self, output_dir: Path) -> str:
        return (f"{self.restored} restored, {self.skipped} skipped (done before; --overwrite to redo), "
                f"{self.failed} failed, {len(self.problems)} not started -> {output_dir} "
                f"(manifest {self.manifest}, {self.seconds:.1f} s)")


@dataclass
class FolderRun:
    """A planned run: its items (input -> output) and the inputs that could not be planned."""

    output_dir: Path
    items: list[Item]
    problems: list[str]
    manifest_path: Path
    mode: str

    @classmethod
    def plan(cls, inputs: Iterable[str], output_dir: Path, options, recursive: bool = False,
             manifest: Path | None = None) -> "FolderRun":
        output_dir = Path(output_dir)
        items, problems = plan(inputs, output_dir, recursive, suffix=options.write_options().suffix)
        return cls(output_dir, items, problems, Path(manifest) if manifest else output_dir / MANIFEST_JSONL,
                   options.mode)

    @property
    def collisions(self) -> list[str]:
        """Outputs claimed twice or landing on an input: the run must not start (exit 2)."""
        return [p for p in self.problems if isinstance(p, Collision)]

    def run(self, restore: Callable[[list[Item]], Iterable[dict]], overwrite: bool = False,
            reporter=None) -> RunSummary:
        """`restore(todo)` yields one record per item (restore_photo's); `reporter.update(record)`
        hears of every record, skipped ones included."""
        if self.collisions:
            raise ValueError("; ".join(self.collisions))
        started = time.monotonic()
        counts = {"ok": 0, "skipped": 0, "failed": 0}
        with OutputLock(self.output_dir):
            remove_stale_temps(self.items)
            earlier = read_manifest(self.manifest_path)
            log = Manifest(self.manifest_path, uuid.uuid4().hex[:12])
            try:
                todo = []
                for item in self.items:
                    if overwrite or not os.path.exists(item.output):
                        todo.append(item)
                        continue
                    record = self._skipped(item, earlier.get(item.input) or {})
                    log.write(record)
                    counts["skipped"] += 1
                    if reporter is not None:
                        reporter.update(record)
                for record in (restore(todo) if todo else ()):
                    log.write(record)
                    counts[record["status"]] += 1
                    if reporter is not None:
                        reporter.update(record)
            finally:
                log.close()
            write_csv_summary(self.manifest_path.with_suffix(".csv"), self.items, read_manifest(self.manifest_path))
        return RunSummary(len(self.items), counts["ok"], counts["skipped"], counts["failed"], self.problems,
                          self.manifest_path, time.monotonic() - started)

    def _skipped(self, item: Item, before: dict) -> dict:
        record = {"input": item.input, "output": item.output, "status": "skipped", "error": None, "mode": self.mode}
        if before.get("status") == "ok" and before.get("output") == item.output:
            record.update({k: before.get(k) for k in FACTS if k in before})  # still true of the file
        return record
