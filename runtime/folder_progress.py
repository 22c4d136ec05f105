"""Progress of a `restore` or `batch` run on stderr (diagnostics never mix with results)."""
from __future__ import annotations

import sys
import time
from pathlib import Path


class Reporter:
    """A rich progress bar on a terminal (or when `rich` is True), else one log line every
    `every` seconds; per-file errors always. With `detail` (the single-process `restore`) the
    bar names the photo and its stage as it runs, and a line per photo gives the faces found
    and enhanced."""

    def __init__(self, total: int, label: str, every: float = 10.0, stream=None, rich: bool | None = None,
                 detail: bool = False):
        self.total, self.label, self.every, self.detail = total, label, every, detail
        self.stream = stream or sys.stderr
        self.done = self.failed = self.skipped = 0
        self.started = self.last = time.monotonic()
        self.progress = None
        if self.stream.isatty() if rich is None else rich:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

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
        if self.detail and record["status"] == "ok" and record.get("faces_found") is not None:
            self._print(f"{Path(record['input']).name}: {record['faces_found']} face(s) found, "
                        f"{record['faces_enhanced']} enhanced")
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=f"{self.label} ({self.failed} failed)")
        elif time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._print(self.line())

    def stage(self, item, name: str) -> None:
        """A stage of `item` ended (detection, encode, mapping, ..., faces): long photos show progress."""
        if self.detail and self.progress is not None:
            self.progress.update(self.task, description=f"{Path(item.input).name}: {name} done")

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
