"""Peak RSS of every stage of a restore, each in its own process: the figures behind
runtime/memory_model.py and the per-pixel figures of runtime/modes.py.

A stage's cost is read as the slope of peak RSS between two photo sizes measured in the
same run (the intercept is the process: interpreter, onnxruntime, weights), so baselines
that differ between stages do not enter the per-pixel figure.

    python -m trt_restore.benchmarks.stage_memory --models MODELS [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
GiB = float(1 << 30)
# (stage, [(height, width), ...]): two sizes each, so that a slope can be taken
FULL = [
    ("global-quality", [(512, 512), (645, 1204)]),
    ("global-scratch", [(384, 384), (512, 512)]),
    ("global-hr", [(512, 512), (645, 1204)]),
    ("tiled-quality", [(866, 1155), (1225, 1633)]),
    ("detection", [(256, 1024), (256, 2048)]),
    ("detection-photo", [(2000, 3000), (4000, 6000)]),
    ("paint", [(2000, 3000), (4000, 6000)]),
    ("decode16", [(3150, 3150), (6300, 6300)]),
    ("encode", [(2000, 3000), (4000, 6000)]),
    # faces: "size" = (faces, crop side); HR's 512 px generator in batches of 1 and of 4
    ("face512-batch1", [(1, 512), (4, 512)]),
    ("face512-batch4", [(1, 512), (4, 512)]),
]
QUICK = [(stage, [(h // 4, w // 4) for h, w in sizes]) for stage, sizes in FULL if not stage.startswith("face")]


def proc_status(field: str) -> int:
    """A byte count from /proc/self/status (VmRSS, VmHWM, VmPeak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak() -> int:
    """Start a new peak (Linux: VmHWM back to the current RSS); returns the current RSS.
    Making a stage's inputs must not count as the stage's peak."""
    Path("/proc/self/clear_refs").write_text("5")
    return proc_status("VmRSS")


def peak_rss() -> int:
    """Peak RSS since reset_peak (VmHWM)."""
    return proc_status("VmHWM")


def _photo(height: int, width: int):
    from .tiling_bench import photo

    image, mask = photo(height * width / 1e6)
    import cv2

    return (cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR),
            cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST))


def _stage(stage: str, height: int, width: int, models: str, threads: int):
    """A callable running `stage` on a photo of height x width (inputs made beforehand)."""
    if stage.startswith(("global-", "tiled-")):
        from trt_restore import Restorer

        path, mode = stage.split("-", 1)
        image, mask = _photo(height, width)
        restorer = Restorer(models=models, backend="ort", mode=mode, threads=threads, faces=False,
                            tile="off" if path == "global" else "on", max_memory="1G")
        return lambda: restorer.restore_with_stages(image, mask=None if mode == "quality" else mask)
    if stage in ("detection", "detection-photo"):
        from trt_restore.backends import create_backend
        from trt_restore.scratch_detection import detect_scratches

        backend = create_backend("ort", models, threads=threads)
        image, _ = _photo(height, width)
        return lambda: detect_scratches(backend, image)
    if stage.startswith("face"):
        from trt_restore.backends import create_backend
        from trt_restore.faces.generator import FaceGenerator

        generator = FaceGenerator(create_backend("ort", models, threads=threads), width, int(stage.split("batch")[1]))
        crops = np.random.default_rng(0).integers(0, 256, (height, width, width, 3), dtype=np.uint8)
        return lambda: generator(crops)
    if stage == "paint":
        from trt_restore.preprocess import dilate_mask, paint_holes

        image, mask = _photo(height, width)
        return lambda: paint_holes(image, dilate_mask(mask))
    if stage == "decode16":
        import cv2

        from trt_restore.io import read_photo

        ramp = (np.arange(width, dtype=np.uint32) * 65535 // max(1, width - 1)).astype(np.uint16)
        path = Path(tempfile.mkdtemp()) / "gray16.png"
        cv2.imwrite(str(path), np.ascontiguousarray(np.broadcast_to(ramp, (height, width))))
        return lambda: read_photo(path)
    if stage == "encode":
        from trt_restore.io import encode_image

        image, _ = _photo(height, width)
        return lambda: encode_image(image)
    raise ValueError(f"unknown stage {stage!r}")


def measure_one(stage: str, height: int, width: int, models: str, threads: int) -> dict:
    run = _stage(stage, height, width, models, threads)
    before = reset_peak()
    start = time.perf_counter()
    run()
    return {"stage": stage, "size": [height, width], "pixels": height * width,
            "seconds": round(time.perf_counter() - start, 2), "rss_before_bytes": before, "peak_rss_bytes": peak_rss()}


def run_child(args, stage: str, height: int, width: int) -> dict:
    command = [sys.executable, "-m", "trt_restore.benchmarks.stage_memory", "--child", stage, str(height), str(width),
               "--models", str(args.models), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"stage": stage, "size": [height, width], "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def slopes(rows: list[dict]) -> dict:
    """Per stage: bytes per pixel (slope of peak RSS) and the fitted intercept."""
    fits = {}
    for stage in dict.fromkeys(r["stage"] for r in rows if not r["stage"].startswith("face")):
        points = [r for r in rows if r["stage"] == stage and "peak_rss_bytes" in r]
        if len(points) < 2:
            continue
        a, b = sorted(points, key=lambda r: r["pixels"])[:2]
        per_pixel = (b["peak_rss_bytes"] - a["peak_rss_bytes"]) / (b["pixels"] - a["pixels"])
        fits[stage] = {"bytes_per_pixel": round(per_pixel, 1),
                       "intercept_bytes": int(a["peak_rss_bytes"] - per_pixel * a["pixels"])}
    return fits


def write_reports(rows: list[dict], fits: dict, out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "stage_memory.json").write_text(json.dumps({"meta": meta, "rows": rows, "fits": fits}, indent=1) + "\n")
    lines = ["# Peak RSS per stage", "",
             f"{meta['machine']}, onnxruntime CPU, {meta['threads']} threads, synthetic weights, synthetic photo "
             "(scratch modes: drawn scratches as the mask). Each row is its own process; `per pixel` is the slope "
             "of peak RSS between the two sizes of a stage (the process itself is the intercept; RSS before and the "
             "peak are taken after the stage's inputs were made, VmHWM reset). Global rows run untiled "
             "(`tile=\"off\"`, no faces; detection included in the scratch modes); `tiled-` rows run tiled under "
             "`--max-memory 1G` (strips and in-RAM maps at their smallest), so their slope is what the tiled path "
             "keeps per photo pixel (full-photo input, latent, mapped and output arrays).", "",
             "| stage | size (HxW) | MP | time (s) | RSS before (GiB) | peak RSS (GiB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['stage']} | {r['size'][0]}x{r['size'][1]} | — | error: {' '.join(r['error'])} | | |")
            continue
        faces = r["stage"].startswith("face")  # size = (faces, crop side)
        size = f"{r['size'][0]} faces of {r['size'][1]} px" if faces else f"{r['size'][0]}x{r['size'][1]}"
        megapixels = (r["size"][0] * r["size"][1] ** 2 if faces else r["pixels"]) / 1e6
        lines.append(f"| {r['stage']} | {size} | {megapixels:.2f} | {r['seconds']} | "
                     f"{r['rss_before_bytes'] / GiB:.2f} | {r['peak_rss_bytes'] / GiB:.2f} |")
    lines += ["", "| stage | bytes per pixel | intercept (GiB) |", "|---|---|---|"]
    lines += [f"| {s} | {f['bytes_per_pixel']:.0f} | {f['intercept_bytes'] / GiB:.2f} |" for s, f in fits.items()]
    lines += ["", *meta.get("notes", [])]
    (out / "stage_memory.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="quarter sides (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated stages")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, h, w = args.child
        print(json.dumps(measure_one(stage, int(h), int(w), args.models, args.threads)))
        return
    wanted = set(filter(None, args.only.split(",")))
    rows = []
    for stage, sizes in QUICK if args.quick else FULL:
        if wanted and stage not in wanted:
            continue
        for height, width in sizes:
            rows.append(run_child(args, stage, height, width))
            print(json.dumps(rows[-1]), file=sys.stderr)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": args.threads, "quick": args.quick}
    write_reports(rows, slopes(rows), args.out, meta)


if __name__ == "__main__":
    main()
