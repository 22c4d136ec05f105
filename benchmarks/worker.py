"""One benchmark configuration in a fresh process (so peak RSS is this configuration's own).

    python -m trt_restore.benchmarks.worker '{"config": "ort-fp32", "mode": "quality", ...}'

prints one JSON line: load time, every repeat's total and per-stage seconds (warm-up runs
excluded), peak RSS before and after the runs.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from contextlib import contextmanager

import numpy as np

CONFIGS = ("torch-fp32", "torch-dense", "ort-fp32", "ort-int8")


def peak_rss_mb() -> float:
    """Peak resident set of this process's own address space (VmHWM). Not getrusage's ru_maxrss:
    on Linux that keeps the parent's high-water mark across fork + exec."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A real old photo (the original's test set) resized to the size, so the networks see
    photo statistics; deterministic."""
    from pathlib import Path

    import cv2

    from trt_restore.io import read_image

    data = Path(__file__).resolve().parents[1] / "tests" / "data" / "old_a.png"
    if data.is_file():
        image = read_image(data)
        return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC))
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint((np.tanh(0.9 * smooth) + 1) * 127.5), 0, 255).astype(np.uint8)


def bench_mask(height: int, width: int, seed: int = 1) -> np.ndarray:
    """A drawn scratch mask (~3% of the pixels): synthetic detectors flag every pixel."""
    import cv2

    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(max(3, (height * width) // 60000)):
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(mask, p0, p1, 255, int(rng.integers(3, 7)))
    return mask


# ---- PyTorch ------------------------------------------------------------------------------

def dense_nonlocal_forward(block, x, mask):
    """The original's NonLocalBlock2D_with_mask_Res (mode "combine", renorm): materialises the
    N x N affinity, its softmax, the repeated key mask and the renormalised product."""
    import torch
    import torch.nn.functional as F

    batch, channels = x.shape[:2]
    g_x = block.g(x).view(batch, channels, -1).permute(0, 2, 1)
    theta_x = block.theta(x).view(batch, channels, -1).permute(0, 2, 1)
    phi_x = block.phi(x).view(batch, channels, -1)
    f = torch.matmul(theta_x, phi_x)
    f_div_c = F.softmax(f, dim=2)
    tmp = 1 - mask
    mask = F.interpolate(mask, (x.size(2), x.size(3)), mode="bilinear")
    mask[mask > 0] = 1.0
    mask = 1 - mask
    tmp = F.interpolate(tmp, (x.size(2), x.size(3)))
    mask *= tmp
    mask_expand = mask.view(batch, 1, -1).repeat(1, x.size(2) * x.size(3), 1)
    f_div_c = mask_expand * f_div_c
    f_div_c = F.normalize(f_div_c, p=1, dim=2)
    y = torch.matmul(f_div_c, g_x).permute(0, 2, 1).contiguous().view(batch, channels, *x.size()[2:])
    w_y = block.res_block(block.W(y))
    full_mask = mask.repeat(1, channels, 1, 1)
    return full_mask * x + (1 - full_mask) * w_y


class TorchStages:
    """TorchGlobalRestorer with per-stage timers around its networks."""

    def __init__(self, weights: str, mode: str, dense: bool = False):
        import types

        from trt_restore.export.reference_pipeline import TAGS, TorchGlobalRestorer

        self.restorer = TorchGlobalRestorer(weights, mode)
        self.timings: dict[str, float] = {}
        encoder, mapping, decoder = (self.restorer.nets[t] for t in TAGS[mode][:3])
        self._wrap(encoder, "encode", "encode")
        self._wrap(decoder, "decode", "decode")
        self._wrap(mapping, "forward", "mapping")
        if "detection" in self.restorer.nets:
            self._wrap(self.restorer.nets["detection"], "forward", "detection")
        if dense:
            block = mapping.NL
            block.forward = types.MethodType(dense_nonlocal_forward, block)

    def _wrap(self, module, method: str, stage: str) -> None:
        original = getattr(module, method)
        timings = self.timings

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started

        if method == "forward":
            module.forward = timed
        else:
            setattr(module, method, timed)

    def restore(self, image, mask):
        self.timings.clear()
        self.restorer.restore(image, mask=mask)
        return dict(self.timings)


# ---- runner --------------------------------------------------------------------------------

@contextmanager
def _stopwatch(result: dict, key: str):
    started = time.perf_counter()
    yield
    result[key] = time.perf_counter() - started


def run(spec: dict) -> dict:
    config, mode = spec["config"], spec.get("mode", "quality")
    height, width = spec["height"], spec["width"]
    threads = spec.get("threads") or len(os.sched_getaffinity(0))
    result: dict = {"spec": spec, "pid": os.getpid()}
    image = bench_image(height, width)
    mask = bench_mask(height, width) if mode != "quality" else None
    result["rss_start_mb"] = round(current_rss_mb(), 1)
    with _stopwatch(result, "load_s"):
        if config.startswith("torch"):
            import torch

            torch.set_num_threads(threads)
            runner = TorchStages(spec["weights"], mode, dense=config == "torch-dense")
            restore = lambda: runner.restore(image, mask)  # noqa: E731
        elif config.startswith("ort"):
            from trt_restore.backends.onnxruntime_backend import OrtBackend
            from trt_restore.global_restoration import GlobalRestorer

            backend = OrtBackend(spec["models"], threads=threads, precision=config.split("-")[1])
            restorer = GlobalRestorer(backend, mode)

            def restore():
                return restorer.restore(image, mask=mask).timings
        else:
            raise SystemExit(f"unknown config {config!r} (choose {', '.join(CONFIGS)})")
    result["rss_loaded_mb"] = round(current_rss_mb(), 1)
    runs = []
    for index in range(spec.get("warmup", 1) + spec.get("repeats", 3)):
        started = time.perf_counter()
        stages = restore()
        total = time.perf_counter() - started
        if index >= spec.get("warmup", 1):
            runs.append({"total_s": total, "stages_s": {k: round(v, 5) for k, v in stages.items()}})
        if total > spec.get("budget_s", 1e9) and index >= spec.get("warmup", 1):
            break  # slow configurations: fewer repeats, said in the result
    result["runs"] = runs
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["loadavg"] = os.getloadavg()
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
