"""Peak RSS and time versus megapixels, tiled vs untiled, for each global mode.

Every measurement runs in its own process (peak RSS = that process's ru_maxrss), on a
synthetic smooth photo with drawn scratches (synthetic weights make the detector flag
everything, so the scratch modes get an explicit mask). Writes JSON, markdown and a PNG.

    python benchmarks/tiling_bench.py --models MODELS [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
FULL = {"quality": [0.25, 1, 4, 12], "hr": [0.25, 1, 4, 12], "scratch": [0.25, 1, 2]}
QUICK = {"quality": [0.02, 0.05], "hr": [0.02, 0.05], "scratch": [0.02, 0.05]}
UNTILED_LIMIT = 16 << 30  # run the untiled path only where its estimate fits this machine


def photo(megapixels: float, seed: int = 0):
    import cv2

    height = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    width = int(round(height * 4 / 3))
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((max(2, height // 32), max(2, width // 32), 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(np.rint((np.tanh(0.9 * image) + 1) * 127.5), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(6):
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(mask, p0, p1, 255, max(2, height // 300))
    return image, mask


def measure_one(models: str, mode: str, megapixels: float, tiled: bool, max_memory: str, threads: int) -> dict:
    from trt_restore import Restorer

    image, mask = photo(megapixels)
    restorer = Restorer(models=models, backend="ort", mode=mode, threads=threads,
                        tile="on" if tiled else "off", max_memory=max_memory if tiled else "1T")
    start = time.perf_counter()
    result = restorer.restore_with_stages(image, mask=None if mode == "quality" else mask)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "megapixels": round(image.shape[0] * image.shape[1] / 1e6, 3), "size": list(image.shape[:2]),
            "tiled": tiled, "seconds": round(seconds, 2), "peak_rss_bytes": peak,
            "timings": {k: round(v, 2) for k, v in result.timings.items()}}


def run_child(args, mode, mp, tiled) -> dict:
    cmd = [sys.executable, __file__, "--models", args.models, "--one", mode, str(mp), "tiled" if tiled else "untiled",
           "--max-memory", args.max_memory, "--threads", str(args.threads)]
    load_before = os.getloadavg()[0]
    done = subprocess.run(cmd, capture_output=True, text=True)
    load = round(max(load_before, os.getloadavg()[0]), 1)  # other jobs on the cores make times upper bounds
    if done.returncode != 0:
        return {"mode": mode, "megapixels": mp, "tiled": tiled, "error": done.stderr.strip().splitlines()[-1:],
                "loadavg": load}
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"loadavg": load}


def merge(rows: list[dict], row: dict) -> list[dict]:
    """A new measurement replaces the previous one of the same mode, size and path."""
    key = (row["mode"], round(row["megapixels"], 2), row["tiled"])
    kept = [r for r in rows if (r["mode"], round(r["megapixels"], 2), r["tiled"]) != key]
    order = {"quality": 0, "scratch": 1, "hr": 2}
    return sorted(kept + [row], key=lambda r: (order.get(r["mode"], 9), r["megapixels"], not r["tiled"]))


def write_reports(rows: list[dict], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tiling.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    lines = [f"# Peak memory and time vs megapixels ({meta['machine']})", "",
             f"Budget `--max-memory {meta['max_memory']}`, {meta['threads']} threads, onnxruntime CPU, "
             "synthetic weights, synthetic photo with drawn scratches. Load = the 1-minute load average "
             "around the run (2 cores: above ~2.5 other jobs were competing, so the time is an upper bound; "
             "— = not recorded: measured while other jobs shared the machine, load 2–10).", "",
             "| mode | MP | path | time (s) | peak RSS (GiB) | load |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['megapixels']} | {'tiled' if r['tiled'] else 'untiled'} | failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['mode']} | {round(r['megapixels'], 2)} | {'tiled' if r['tiled'] else 'untiled'} | "
                         f"{r['seconds']:.0f} | {r['peak_rss_bytes'] / 2**30:.2f} | {r.get('loadavg', '—')} |")
    (out / "tiling.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode in FULL:
        for tiled, style in ((True, "-o"), (False, "--x")):
            pts = sorted((r["megapixels"], r) for r in rows if r["mode"] == mode and r["tiled"] == tiled and "error" not in r)
            if not pts:
                continue
            label = f"{mode} {'tiled' if tiled else 'untiled'}"
            axes[0].plot([p for p, _ in pts], [r["peak_rss_bytes"] / 2**30 for _, r in pts], style, label=label)
            axes[1].plot([p for p, _ in pts], [r["seconds"] for _, r in pts], style, label=label)
    axes[0].axhline(4, color="grey", lw=0.8)
    axes[0].set(xlabel="megapixels", ylabel="peak RSS (GiB)", title="memory")
    axes[1].set(xlabel="megapixels", ylabel="seconds", title="time", yscale="log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "tiling.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--max-memory", default="4G")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--modes", default="quality,scratch,hr")
    parser.add_argument("--sizes", default="", help="override: comma-separated megapixels for every mode")
    parser.add_argument("--append", action="store_true", help="add to the existing tiling.json")
    parser.add_argument("--untiled", default="auto", choices=["auto", "no"], help="also run the untiled path where it fits")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "MP", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        mode, mp, path = args.one
        print(json.dumps(measure_one(args.models, mode, float(mp), path == "tiled", args.max_memory, args.threads)))
        return
    from trt_restore.tiling.plan import untiled_peak_estimate

    sizes = QUICK if args.quick else FULL
    if args.sizes:
        sizes = {mode: [float(v) for v in args.sizes.split(",")] for mode in FULL}
    previous = Path(args.out) / "tiling.json"
    rows = json.loads(previous.read_text())["runs"] if args.append and previous.is_file() else []
    for mode in args.modes.split(","):
        for mp in sizes[mode]:
            h = int((mp * 1e6 * 3 / 4) ** 0.5)
            fits = untiled_peak_estimate(mode, h, h * 4 // 3) <= UNTILED_LIMIT and args.untiled == "auto"
            paths = [True] + ([False] if fits else [])
            for tiled in paths:
                row = run_child(args, mode, mp, tiled)
                rows = merge(rows, row)
                print(json.dumps(row), flush=True)
                write_reports(rows, Path(args.out), {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
                                                     "max_memory": args.max_memory, "threads": args.threads})


if __name__ == "__main__":
    main()
