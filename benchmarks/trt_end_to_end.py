"""The TensorRT part of benchmarks/gpu_check.sh (run only where `import tensorrt` works):
synthetic weights -> `trt-restore export` (quality graphs and their per-layer graphs) ->
`trt-restore build-engines --precision fp16` -> restore one synthetic 12 MP photo in quality
mode with `--backend trt --tile on` -> the same restore in one process that reads the backend's
host<->device byte counters ("transfers": bytes each way and per pixel; the tiled executor
keeps maps on the device, so they should be a few times the photo's float bytes, not the
layers' maps). Each step's wall time, exit code and peak RSS (of that step's process,
os.wait4) go into OUT/gpu_check.json under "tensorrt_end_to_end", or into
OUT/gpu_check_tensorrt.json when the harness wrote no gpu_check.json.

    python benchmarks/trt_end_to_end.py --out OUT_DIR [--work DIR] [--size 4000x3000]

Exit code: 0 every step succeeded, 1 a step failed (the later steps are not run).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAGS = ("VAE_A_quality", "VAE_B_quality", "mapping_quality")
GRAPHS = ("vae_a_quality_encoder", "mapping_quality", "vae_b_quality_decoder")
KEY = "tensorrt_end_to_end"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "trt_restore.cli", *args]


def steps(work: Path, photo: Path) -> list[tuple[str, list[str]]]:
    """(name, command) in order; each needs the previous one's output."""
    weights, models = work / "weights", work / "models"
    graphs = [arg for graph in GRAPHS for arg in ("--graph", graph)]
    return [
        ("synthetic-weights", cli("synthetic-weights", str(weights), *[a for t in TAGS for a in ("--tag", t)])),
        ("export", cli("export", "-w", str(weights), "-o", str(models), "--no-faces", *graphs)),
        ("build-engines fp16", cli("build-engines", "-m", str(models), "--precision", "fp16")),
        ("restore 12 MP quality --backend trt --tile on",
         cli("restore", str(photo), "-o", str(work / "restored"), "-m", str(models), "--backend", "trt",
             "--tile", "on", "--no-faces", "--overwrite")),
        ("transfers of a tiled 12 MP restore",
         [sys.executable, str(Path(__file__).resolve()), "--measure-transfers", str(models), str(photo),
          str(work / TRANSFERS)]),
    ]


TRANSFERS = "transfers.json"


def measure_transfers(models: Path, photo: Path, target: Path) -> dict:
    """Restore `photo` tiled (quality mode, --tile on, fp16 engines) in this process and write
    the bytes copied between host and device during the restore (TrtBackend.memory)."""
    from trt_restore.backends.tensorrt_backend import TrtBackend
    from trt_restore.io import read_image
    from trt_restore.tiling.plan import plan_tiling
    from trt_restore.tiling.runner import TiledGlobalRestorer

    image = read_image(photo)
    height, width = image.shape[:2]
    backend = TrtBackend(models, precision="fp16")
    before = dict(backend.memory.transferred)
    TiledGlobalRestorer(backend, "quality", plan_tiling("quality", height, width, "on")).restore(image)
    moved = {f"{k}_bytes": backend.memory.transferred[k] - before[k] for k in before}
    total = sum(moved.values())
    result = {**moved, "pixels": height * width, "bytes_per_pixel": round(total / (height * width), 2),
              "photo_float_bytes": 3 * height * width * 4,
              "total_over_photo_float": round(total / (12 * height * width), 2)}
    backend.close()
    target.write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_photo(path: Path, width: int, height: int) -> None:
    """A smooth synthetic photo (gradients and a pattern): PNG, 8-bit RGB."""
    import cv2
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [128 + 100 * np.sin(x / 97.0 + k) * np.cos(y / 61.0 - k) for k in range(3)]
    image = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def timed(name: str, command: list[str]) -> dict:
    """Run one step; its wall time, exit code and the peak RSS of its process."""
    print(f"-- {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    record = {"step": name, "seconds": round(seconds, 2), "exit_code": process.returncode,
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}  # ru_maxrss: KiB on Linux
    print(f"-- {name}: exit {record['exit_code']}, {record['seconds']} s, peak RSS {record['peak_rss_mib']} MiB",
          flush=True)
    return record


def run_all(work: Path, size: tuple[int, int]) -> dict:
    photo = work / "photo_12mp.png"
    write_photo(photo, *size)
    result = {"photo": {"width": size[0], "height": size[1]}, "mode": "quality", "steps": [], "ok": False}
    for name, command in steps(work, photo):
        record = timed(name, command)
        result["steps"].append(record)
        if record["exit_code"] != 0:
            result["failed_step"] = name
            return result
    result["transfers"] = json.loads((work / TRANSFERS).read_text())
    result["ok"] = True
    return result


def record(out: Path, result: dict) -> Path:
    """Into the harness's gpu_check.json when there is one, else a file of its own."""
    target = out / "gpu_check.json"
    if target.is_file():
        report = json.loads(target.read_text())
    else:
        target, report = out / "gpu_check_tensorrt.json", {}
    report[KEY] = result
    target.write_text(json.dumps(report, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--size", default="4000x3000", help="photo WIDTHxHEIGHT (default 12 MP)")
    parser.add_argument("--measure-transfers", nargs=3, type=Path, metavar=("MODELS", "PHOTO", "JSON"),
                        help="(a step of the run) restore PHOTO tiled and write its host<->device bytes")
    args = parser.parse_args(argv)
    if args.measure_transfers:
        print(json.dumps(measure_transfers(*args.measure_transfers)))
        return 0
    if args.out is None:
        parser.error("--out is required")
    width, height = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trt_e2e_") as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        result = run_all(work, (width, height))
    target = record(args.out, result)
    print(f"TensorRT end to end: {'ok' if result['ok'] else 'FAILED at ' + result['failed_step']}; "
          f"recorded in {target}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
