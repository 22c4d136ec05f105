"""`trt-restore batch`: planning, manifest, idempotent reruns, stale temp files, the output
lock (fast, with a stand-in restorer), and a job killed mid-run with the real models that
completes on rerun with every output present exactly once."""
from __future__ import annotations

import collections
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve_support import serve_models  # noqa: F401  (fixture)
from trt_restore.restorer import RestoreResult
from trt_restore.serve.batch import (LOCK_NAME, OutputLock, RestoreOptions, plan, read_manifest,
                                     remove_stale_temps, run_batch)

REPO = Path(__file__).resolve().parents[1]


class Negative:
    """Stand-in restorer: inverts the photo (deterministic, instant)."""

    calls = 0

    def restore_with_stages(self, image, mask=None, on_stage=None):
        Negative.calls += 1
        return RestoreResult(restored=255 - image)


def make_photos(folder: Path, count: int, size=(40, 48), start=0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(start, start + count):
        image = np.full(size + (3,), k * 7 % 256, np.uint8)
        image[k % size[0], :, :] = 255  # a per-photo mark, so outputs can be told apart
        path = folder / f"scan_{k:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def options() -> RestoreOptions:
    return RestoreOptions(models="unused")


def test_plan_mirrors_folders_and_refuses_collisions(tmp_path):
    make_photos(tmp_path / "in", 2)
    make_photos(tmp_path / "in" / "box2", 1)
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    (tmp_path / "other").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "other" / "scan_000.jpg")
    items, problems = plan([str(tmp_path / "in"), str(tmp_path / "other" / "scan_000.jpg")], tmp_path / "out",
                           recursive=True)
    outputs = [Path(i.output).relative_to(tmp_path / "out").as_posix() for i in items]
    assert outputs == ["scan_000.png", "scan_001.png", "box2/scan_000.png"]
    assert len(problems) == 1 and "scan_000.jpg" in problems[0] and "already the output of" in problems[0]
    flat, _ = plan([str(tmp_path / "in")], tmp_path / "out")
    assert len(flat) == 2  # no --recursive: subfolders are left alone
    same, problems = plan([str(tmp_path / "in" / "scan_000.png")], tmp_path / "in")
    assert same == [] and "would overwrite the input" in problems[0]
    _, problems = plan([str(tmp_path / "missing"), str(tmp_path / "*.tif")], tmp_path / "out")
    assert "no such file" in problems[0] and "matched no files" in problems[1]


def test_rerun_skips_finished_outputs_and_records_everything(tmp_path):
    photos = make_photos(tmp_path / "in", 5)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    Negative.calls = 0
    first = run_batch([str(tmp_path / "in")], out, options(), restorer=Negative())
    assert (first.total, first.restored, first.failed, first.skipped) == (6, 5, 1, 0) and first.exit_code == 1
    assert Negative.calls == 5
    for photo in photos:
        restored = np.asarray(Image.open(out / photo.name))
        np.testing.assert_array_equal(restored, 255 - np.asarray(Image.open(photo)))
    latest = read_manifest(out / "manifest.jsonl")
    broken = latest[str(tmp_path / "in" / "broken.png")]
    assert broken["status"] == "failed" and "broken.png" in broken["error"] and "corrupt" in broken["error"]
    assert all(latest[str(p)]["status"] == "ok" and latest[str(p)]["width"] == 48 for p in photos)

    # rerun after adding one photo: only the new one is restored, the broken one is retried
    make_photos(tmp_path / "in", 1, start=5)
    second = run_batch([str(tmp_path / "in")], out, options(), restorer=Negative())
    assert (second.restored, second.skipped, second.failed) == (1, 5, 1) and Negative.calls == 6
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 6 + 7 and len({line["run"] for line in lines}) == 2
    with open(out / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # a rerun keeps the first run's facts: restored files stay "ok" with their size (issue 16)
    assert len(rows) == 7 and sorted(r["status"] for r in rows) == ["failed"] + ["ok"] * 6
    assert all(r["width"] == "48" for r in rows if r["status"] == "ok")
    assert sorted(line["status"] for line in lines[6:]) == ["failed", "ok"] + ["skipped"] * 5  # the log is honest

    # --overwrite redoes everything
    third = run_batch([str(tmp_path / "in")], out, options(), restorer=Negative(), overwrite=True)
    assert third.restored == 6 and Negative.calls == 12
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"scan_{k:03d}.png" for k in range(6)] + ["manifest.jsonl", "manifest.csv", LOCK_NAME])


def test_crash_leftovers_are_cleaned_and_the_manifest_repaired(tmp_path):
    make_photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".scan_001.png.k3j_x9a.tmp").write_bytes(b"half a png")  # a killed write_image
    (out / ".unrelated.tmp").write_bytes(b"not ours")
    (out / "manifest.jsonl").write_text('{"input": "x", "status": "ok"}\n{"input": "y", "sta')  # torn line
    summary = run_batch([str(tmp_path / "in")], out, options(), restorer=Negative(), workers=2)
    assert summary.restored == 3
    assert not (out / ".scan_001.png.k3j_x9a.tmp").exists() and (out / ".unrelated.tmp").exists()
    latest = read_manifest(out / "manifest.jsonl")
    assert set(latest) == {"x"} | {str(tmp_path / "in" / f"scan_{k:03d}.png") for k in range(3)}


def test_one_job_per_output_folder(tmp_path):
    with OutputLock(tmp_path / "out"):
        with pytest.raises(RuntimeError, match="another restore or batch run"):
            run_batch([str(tmp_path)], tmp_path / "out", options(), restorer=Negative())
    assert remove_stale_temps([]) == 0


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_killed_job_completes_on_rerun_exactly_once(serve_models, tmp_path):
    """The real CLI, SIGKILLed after its first outputs; the rerun restores only the rest:
    every output then exists exactly once, no temp file is left, each input has one
    'ok' record and none was restored twice."""
    photos = make_photos(tmp_path / "in", 12, size=(64, 64))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "trt_restore.cli", "batch", str(tmp_path / "in"), "-o", str(out),
               "--models", str(serve_models), "--threads", "1"]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = wait_for(lambda: len(list(out.glob("scan_*.png"))) >= 2, 120)
        job.send_signal(signal.SIGKILL)
        job.wait(30)
    finally:
        job.kill()
    assert started, job.stdout.read()
    done_before = {p.name for p in out.glob("scan_*.png")}
    assert 2 <= len(done_before) < 12, "the job was not killed mid-run"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{12 - len(done_before)} restored, {len(done_before)} skipped" in rerun.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"scan_{k:03d}.png" for k in range(12)] + ["manifest.jsonl", "manifest.csv", LOCK_NAME])
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()
               and line.startswith("{") and line.endswith("}")]
    restored = collections.Counter(r["input"] for r in records if r["status"] == "ok")
    assert max(restored.values()) == 1  # nothing restored twice
    # (an output finished just before the kill may lack its record: the rerun records it as skipped)
    accounted = set(restored) | {r["input"] for r in records if r["status"] == "skipped"}
    assert accounted == {str(p) for p in photos}  # nothing lost
    for photo in photos:
        assert Image.open(out / photo.name).size == (64, 64)
    with open(out / "manifest.csv", newline="") as handle:
        # restored in either run: "ok" (a rerun keeps the first run's facts); skipped only when
        # the killed run finished the file without recording it
        assert sorted(r["status"] for r in csv.DictReader(handle)) == ["ok"] * len(restored) + \
            ["skipped"] * (12 - len(restored))


def test_runtime_and_cli_work_without_serving_packages(tmp_path):
    """FastAPI, uvicorn, Ray and Playwright are optional: the runtime, the CLI and the batch
    command import without them, and `serve` says which extra to install."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('fastapi', 'uvicorn', 'starlette', 'ray', 'playwright', 'python_multipart'):
            raise ModuleNotFoundError(f'blocked {name}', name=name)
sys.meta_path.insert(0, Block())
import trt_restore, trt_restore.serve, trt_restore.serve.batch, trt_restore.serve.engine
from typer.testing import CliRunner
from trt_restore.cli import app
result = CliRunner().invoke(app, ['--help'])
assert result.exit_code == 0 and 'serve' in result.output and 'batch' in result.output, result.output
result = CliRunner().invoke(app, ['serve', '--models', 'nowhere'])
assert result.exit_code == 2 and "pip install 'trt-restore[serve]'" in result.output, result.output
result = CliRunner().invoke(app, ['batch', sys.argv[1], '-o', sys.argv[2], '--models', 'nowhere'])
assert result.exit_code == 2 and 'no model manifest' in result.output, result.output
"""
    make_photos(tmp_path, 1)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "scan_000.png"), str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
