"""Odd shapes (1xN, Nx1, 16x4000, prime sides, 40 MP) through every mode under an
address-space limit: each photo must end restored or refused with one line, never killed.

Each (mode, shape) runs in its own process (its own peak RSS) that reads a PNG, restores it
with `--max-memory BUDGET` and writes the result, under `RLIMIT_AS` = the address space a
plain 64x64 run of the same mode reserves, untiled and tiled (onnxruntime's arenas and thread
stacks reserve far more than they touch) + BUDGET. Past the limit an allocation fails (MemoryError, or
onnxruntime's own error) instead of the kernel killing the process, so a stage that outgrows
the budget shows up as an error row, not as a lost machine.

    python -m trt_restore.benchmarks.odd_shapes --models MODELS [--budget 2G] [--shapes 1x300,257x1021]

`--stop-after STAGE` ends a photo after that stage (40 MP: the stages that span the whole
photo run, the hours of tiled CPU inference do not). Writes odd_shapes.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
MODES = ("quality", "scratch", "hr")
FAST_SHAPES = ((1, 300), (300, 1), (16, 400), (400, 16), (37, 101))
FULL_SHAPES = ((1, 4000), (4000, 1), (16, 4000), (4000, 16), (257, 1021), (1021, 257), (7303, 5477))
PROBE = (64, 64)  # the plain small run whose address space is the limit's baseline


class StopAfter(Exception):
    """Raised from the stage hook to end a photo early (--stop-after)."""


def parse_shape(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def write_photo(path: Path, height: int, width: int) -> Path:
    """A smooth synthetic photo (PNG), row by row so a 40 MP one costs little here."""
    import cv2

    ys = (np.arange(height, dtype=np.float32) / max(1, height - 1))[:, None]
    xs = (np.arange(width, dtype=np.float32) / max(1, width - 1))[None, :]
    image = np.empty((height, width, 3), np.uint8)
    for c, phase in enumerate((0.0, 2.0, 4.0)):
        image[:, :, c] = np.rint(127.5 + 100 * np.sin(6 * xs + 4 * ys + phase))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not be written")
    return path


def vm_peak() -> int:
    """VmPeak of this process in bytes (the address space reserved at most)."""
    from .stage_memory import proc_status

    return proc_status("VmPeak")


def restore_one(restorer, path: Path, stop_after: str | None = None) -> dict:
    """Read, restore and write one photo; the outcome as a dict with the photo's own peak RSS
    (VmHWM reset before it: earlier photos and the probe do not count)."""
    from trt_restore.io import ImageError, read_photo, write_image

    from .stage_memory import proc_status, reset_peak

    reset_peak()
    start = time.perf_counter()
    row = {"mode": restorer.mode, "file": path.name}

    def on_stage(name: str) -> None:
        if name == stop_after:
            raise StopAfter(name)

    try:
        photo = read_photo(path)
        result = restorer.restore_with_stages(photo.pixels, on_stage=on_stage)
        write_image(path.with_name(f"{path.stem}_{restorer.mode}.png"), result.restored)
        row.update(outcome="restored", shape=list(result.restored.shape[:2]))
    except StopAfter as stop:
        row.update(outcome=f"ran to {stop}")
    except (ImageError, ValueError) as err:  # what the CLI reports per file
        row.update(outcome="refused", message=f"{path.name}: {err}")
    except MemoryError as err:
        row.update(outcome="out of memory", message=f"{path.name}: MemoryError {err}")
    row.update(seconds=round(time.perf_counter() - start, 2), vm_peak_bytes=vm_peak(),
               peak_rss_bytes=proc_status("VmHWM"))
    return row


def child(paths: list[Path], mode: str, models: str, budget: str, threads: int, stop_after: str | None) -> list[dict]:
    """In a fresh process: a plain 64x64 run of `mode`, untiled and tiled on the same backend
    (so every session either path uses is loaded), then RLIMIT_AS = the address space reached
    + the budget, then each photo in turn."""
    from trt_restore import Restorer
    from trt_restore.tiling.plan import parse_size, plan_tiling
    from trt_restore.tiling.runner import TiledGlobalRestorer

    restorer = Restorer(models=models, backend="ort", mode=mode, threads=threads, max_memory=budget, faces=False)
    probe = restore_one(restorer, write_photo(Path(tempfile.mkdtemp()) / "probe.png", *PROBE))
    if probe["outcome"] != "restored":
        raise RuntimeError(f"the {PROBE} probe did not restore: {probe}")
    tiled = TiledGlobalRestorer(restorer.backend, mode, plan_tiling(mode, *PROBE, "on", budget))
    tiled.restore(np.full((*PROBE, 3), 128, np.uint8))
    limit = vm_peak() + parse_size(budget)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the probes' peak
    return [dict(restore_one(restorer, path, stop_after), limit_as_bytes=limit, probe_rss_bytes=rss)
            for path in paths]


def run_child(paths: list[Path], mode: str, models, budget: str, threads: int = 2, stop_after: str | None = None,
              timeout: float = 600) -> list[dict]:
    """The photos in one fresh process; a crash or a kill becomes a row saying so."""
    command = [sys.executable, "-m", "trt_restore.benchmarks.odd_shapes", "--mode", mode, "--models", str(models),
               "--budget", budget, "--threads", str(threads), "--child", *map(str, paths)]
    if stop_after:
        command += ["--stop-after", stop_after]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return [{"mode": mode, "file": path.name, "outcome": "crashed", "message": tail[0],
                 "returncode": done.returncode} for path in paths]
    return json.loads(done.stdout.strip().splitlines()[-1])


def photo_files(folder: Path, shapes) -> list[Path]:
    paths = []
    for height, width in shapes:
        path = folder / f"{height}x{width}.png"
        if not path.exists():
            write_photo(path, height, width)
        paths.append(path)
    return paths


def walk(models, shapes, modes=MODES, budget: str = "2G", threads: int = 2, one_process_each: bool = True,
         stop_after: dict | None = None, folder: Path | None = None) -> list[dict]:
    """Every shape through every mode under the address-space limit; one row each.

    one_process_each: a process per photo (its own peak RSS), else one per mode (faster).
    stop_after: {(height, width): {mode: stage}} for photos to end after a stage."""
    folder = Path(folder or tempfile.mkdtemp(prefix="odd_shapes_"))
    paths = photo_files(folder, shapes)
    rows = []
    for mode in modes:
        groups = [[p] for p in paths] if one_process_each else [paths]
        for group in groups:
            shape = parse_shape(group[0].stem)
            stop = (stop_after or {}).get(shape, {}).get(mode) if one_process_each else None
            for row in run_child(group, mode, models, budget, threads, stop):
                row.update(size=list(parse_shape(Path(row["file"]).stem)), budget=budget)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    return rows


def write_reports(rows: list[dict], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "odd_shapes.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    gib = float(1 << 30)
    lines = ["# Odd shapes under an address-space limit", "",
             f"onnxruntime CPU, {meta['threads']} threads, synthetic weights, no faces, `--max-memory` as in the "
             "budget column. Each row is its own process: it restores a plain 64x64 photo of the mode first, untiled "
             "and tiled (all sessions loaded; the probe column is that run's peak), then sets `RLIMIT_AS` to the "
             "address space reached + the budget. Peak RSS is the photo's own (VmHWM reset before it), with the "
             "loaded sessions. `ran to X`: "
             "stopped after stage X on purpose (the full tiled CPU inference of 40 MP takes hours; the stages "
             "that span the whole photo before it did run).", "",
             "| mode | photo (HxW) | budget | outcome | time (s) | peak RSS (GiB) | 64x64 probe RSS (GiB) "
             "| RLIMIT_AS (GiB) | message |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rss, probe, limit = (f"{r[k] / gib:.2f}" if k in r else "—"
                             for k in ("peak_rss_bytes", "probe_rss_bytes", "limit_as_bytes"))
        message = r.get("message", "").replace("|", "/")
        lines.append(f"| {r['mode']} | {r['size'][0]}x{r['size'][1]} | {r.get('budget', '—')} | {r['outcome']} | "
                     f"{r.get('seconds', '—')} | {rss} | {probe} | {limit} | {message} |")
    (out / "odd_shapes.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--budget", default="2G")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--shapes", default="", help="HxW,HxW (default: the full walk)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add the rows to the existing odd_shapes.json")
    parser.add_argument("--child", type=Path, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--stop-after", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.mode, args.models, args.budget, args.threads, args.stop_after)))
        return
    shapes = [parse_shape(s) for s in args.shapes.split(",")] if args.shapes else list(FULL_SHAPES)
    big = {s: {"quality": "encode", "scratch": "detection", "hr": "detection"} for s in shapes if s[0] * s[1] > 20e6}
    rows = walk(args.models, shapes, tuple(args.modes.split(",")), args.budget, args.threads, stop_after=big)
    if args.append and (args.out / "odd_shapes.json").exists():
        rows = json.loads((args.out / "odd_shapes.json").read_text())["rows"] + rows
    write_reports(rows, args.out, {"threads": args.threads})


if __name__ == "__main__":
    main()
