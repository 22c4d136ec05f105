"""Cost of the full-softmax attenuation term in scratch mode's attention, before and after.

The partial nonlocal attention now also streams the invalid (scratch) keys for their
log-sum-exp (runtime/attention.py). This measures that term side by side in one run: the real
theta/phi/g of the exported scratch mapping on a synthetic photo with drawn scratches (head
graph run tiled), then the attention stage alone with the implementation before the change
(loaded from git, `--before REV`) and after it, each in its own process (time, peak RSS of
that process), interleaved. Writes benchmarks/results/attention_attenuation.{json,md}.

    python benchmarks/attention_attenuation.py --models MODELS [--megapixels 0.4 2] [--before 33ba081]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


def make_inputs(models: Path, megapixels: float, folder: Path) -> dict:
    """theta, phi, g (C, N) and key_valid (N,) of the scratch head on a synthetic photo."""
    from tiling_bench import photo

    from trt_restore import attention
    from trt_restore.backends import create_backend
    from trt_restore.preprocess import mask_to_network_input, paint_holes, to_network_input
    from trt_restore.tiling.executor import ExecutorConfig
    from trt_restore.tiling.runner import TiledGlobalRestorer

    image, mask = photo(megapixels)
    h, w = (s // 16 * 16 for s in image.shape[:2])
    image, mask = image[:h, :w], mask[:h, :w]
    restorer = TiledGlobalRestorer(create_backend("ort", models), "scratch", ExecutorConfig(strip_bytes=256 << 20))
    runner = restorer.runner()
    latent = runner.run("vae_a_quality_encoder", {"image": runner.from_array(to_network_input(paint_holes(image, mask)))})
    head = runner.run("mapping_scratch_head", {"latent": latent["latent"]})
    channels, lh, lw = runner.shape(head["x"])
    valid = attention.valid_positions(mask_to_network_input(mask), lh, lw).reshape(-1) > 0.5
    for name in ("theta", "phi", "g"):
        np.save(folder / f"{name}.npy", runner.to_array(head[name])[0].reshape(channels, -1))
    np.save(folder / "valid.npy", valid)
    runner.close()
    return {"megapixels": megapixels, "size": [h, w], "latent": [lh, lw], "positions": int(valid.size),
            "invalid": int((~valid).sum())}


def load_before(rev: str):
    """runtime/attention.py as it was at `rev`, as a module (its relative import re-pointed)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:runtime/attention.py"], check=True,
                            capture_output=True, text=True).stdout
    source = source.replace("from .resize import", "from trt_restore.resize import")
    path = Path(tempfile.mkdtemp()) / "attention_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("attention_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(folder: Path, which: str, rev: str) -> None:
    """Run one attention in this process; print seconds and peak RSS as JSON."""
    if which == "before":
        module = load_before(rev)
    else:
        from trt_restore import attention as module
    arrays = {n: np.load(folder / f"{n}.npy") for n in ("theta", "phi", "g", "valid")}
    start = time.perf_counter()
    out = module.masked_attention(arrays["theta"], arrays["phi"], arrays["g"], arrays["valid"])
    seconds = time.perf_counter() - start
    np.save(folder / f"out_{which}.npy", out)
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def measure(folder: Path, which: str, rev: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, __file__, "--child", str(folder), which, "--before", rev],
                            check=True, capture_output=True, text=True, env=env)
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record["load_average"] = os.getloadavg()[0]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[0.4, 2.0])
    parser.add_argument("--before", default="33ba081", help="git revision of the attention before the change")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "WHICH"))
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.before)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    runs = []
    for megapixels in args.megapixels:
        with tempfile.TemporaryDirectory(prefix="attenuation-") as tmp:
            folder = Path(tmp)
            case = make_inputs(args.models, megapixels, folder)
            for which in ("before", "after"):
                case[which] = measure(folder, which, args.before, args.threads)
                print(f"{megapixels} MP {which}: {case[which]}", file=sys.stderr, flush=True)
            before, after = (np.load(folder / f"out_{w}.npy") for w in ("before", "after"))
            case["rows_changed"] = int(np.any(before != after, axis=0).sum())
            case["max_abs_change"] = float(np.abs(before - after).max())
            runs.append(case)
    RESULTS.mkdir(exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
            "before_rev": args.before}
    (RESULTS / "attention_attenuation.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    lines = ["| MP | latent | invalid keys | before: s / peak GiB | after: s / peak GiB | extra time | rows changed | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['megapixels']:g} | {r['latent'][0]}×{r['latent'][1]} | {r['invalid']} of {r['positions']} | "
                     f"{b['seconds']:.1f} / {b['peak_rss_bytes'] / 2**30:.2f} | {a['seconds']:.1f} / "
                     f"{a['peak_rss_bytes'] / 2**30:.2f} | {100 * (a['seconds'] / b['seconds'] - 1):+.0f}% | "
                     f"{r['rows_changed']} | {b['load_average']:.1f}–{a['load_average']:.1f} |")
    (RESULTS / "attention_attenuation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
