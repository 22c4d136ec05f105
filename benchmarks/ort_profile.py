"""Where the time goes inside onnxruntime: per-operator totals from its profiler.

    python -m trt_restore.benchmarks.ort_profile MODELS_DIR GRAPH[,GRAPH] --size 512 [--precision fp32,int8]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

# inputs of every global graph: (channels, scale relative to the image side)
GRAPH_INPUTS = {
    "vae_a_quality_encoder": {"image": (3, 1)},
    "vae_b_quality_decoder": {"latent": (64, 0.25)},
    "vae_b_scratch_decoder": {"latent": (64, 0.25)},
    "mapping_quality": {"latent": (64, 0.25)},
    "mapping_scratch_head": {"latent": (64, 0.25)},
    "mapping_scratch_tail": {"x": (512, 0.25), "attended": (512, 0.25), "valid": (1, 0.25)},
    "mapping_hr_head": {"latent": (64, 0.25)},
    "mapping_hr_step1": {"z": (512, 0.25), "composed": (512, 0.25), "hole": (1, 0.25)},
    "mapping_hr_step2": {"z": (512, 0.25), "composed": (512, 0.25), "hole": (1, 0.25)},
    "mapping_hr_tail": {"z": (512, 0.25), "composed": (512, 0.25), "hole": (1, 0.25)},
    "detection": {"gray": (1, 1)},
}


def example_feed(graph: str, height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for name, (channels, scale) in GRAPH_INPUTS[graph].items():
        h, w = max(1, int(height * scale)), max(1, int(width * scale))
        if name in ("valid", "hole"):
            feed[name] = (rng.random((1, channels, h, w)) > 0.8).astype(np.float32)
        elif name in ("image", "gray"):
            feed[name] = rng.uniform(-1, 1, (1, channels, h, w)).astype(np.float32)
        else:
            feed[name] = rng.standard_normal((1, channels, h, w)).astype(np.float32)
    return feed


def profile_graph(path: str | Path, feed: dict, threads: int, repeats: int = 2, options=None) -> dict:
    """Per-op-type kernel time (ms per run) of the last `repeats` runs (one warm-up run excluded)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="trt-restore-prof-") as tmp:
        so = options or ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        session.run(None, feed)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            session.run(None, feed)
        wall = (time.perf_counter() - started) / repeats
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    cutoff = runs[-repeats]["ts"] if len(runs) >= repeats else 0
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= cutoff:
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1000 / repeats
    total = sum(by_op.values())
    return {"wall_ms": round(wall * 1000, 1), "kernel_ms": round(total, 1),
            "ops": {k: {"ms": round(v, 1), "share": round(v / total, 4)}
                    for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models")
    parser.add_argument("graphs", help="comma-separated graph names")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precision", default="fp32", help="fp32, int8 or fp32,int8")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from trt_restore.backends.onnxruntime_backend import OrtBackend

    results = {}
    for precision in args.precision.split(","):
        backend = OrtBackend(args.models, precision=precision)
        for graph in args.graphs.split(","):
            results[f"{graph} {precision}"] = profile_graph(
                backend.graph_file(graph), example_feed(graph, args.size, args.size), args.threads, args.repeats)
            top = list(results[f"{graph} {precision}"]["ops"].items())[:5]
            print(f"{graph} {precision} at {args.size}px: " + ", ".join(f"{k} {100 * v['share']:.0f}%" for k, v in top))
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "threads": args.threads, "profiles": results}, indent=1))


if __name__ == "__main__":
    main()
