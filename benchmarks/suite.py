"""The benchmark suite behind `trt-restore bench`: one command, JSON + markdown + PNG.

Every configuration runs in its own subprocess (peak RSS is its own, nothing stays warm from
another configuration); warm-up runs are excluded from the statistics. What is measured:

- latency (median, p90) and peak RSS per configuration x size, per stage and end to end
  (quality mode): PyTorch eager fp32 (the original's computation), onnxruntime fp32,
  onnxruntime INT8 (Q/DQ); TensorRT columns say "n/a" without a GPU;
- the GEMM microbenchmark (this CPU's fp32 peak, int8 GEMM rate) in the same run, and the
  achieved convolution throughput (conv FLOPs of the stage / its time) as a ratio of the peak;
- scratch mode at ~0.4 MP: the original's dense N x N attention vs the chunked attention;
- a folder end to end: the original's stage processes vs one warm process.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SIZES = {"256": (256, 256), "512": (512, 512), "1024": (1024, 1024), "4mp": (1728, 2304)}
CONFIGS = ("torch-fp32", "ort-fp32", "ort-int8")
STAGE_GRAPHS = {"quality": {"encode": ["vae_a_quality_encoder"], "mapping": ["mapping_quality"],
                            "decode": ["vae_b_quality_decoder"]}}


@dataclass
class BenchOptions:
    models: Path
    weights: Path | None = None
    output: Path = Path("benchmarks/results")
    sizes: tuple[str, ...] = ("256", "512", "1024", "4mp")
    configs: tuple[str, ...] = CONFIGS
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    torch_max_pixels: int = 1_100_000  # PyTorch beyond this: skipped (minutes per run), said in the report
    budget_s: float = 120.0  # a configuration stops repeating after a run this slow
    scratch_size: tuple[int, int] | None = (512, 768)  # ~0.4 MP; None skips
    scratch_configs: tuple[str, ...] = ("torch-dense", "torch-fp32", "ort-fp32", "ort-int8")
    folder: Path | None = None  # photos for the end-to-end folder comparison; None skips
    folder_max_side: int = 512
    gemm_size: int = 2048
    name: str = "bench"
    timeout_s: float = 3600.0

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def parse_size(text: str) -> tuple[int, int]:
    if text.lower() in SIZES:
        return SIZES[text.lower()]
    if "x" in text:
        w, h = text.lower().split("x")
        return int(h), int(w)
    side = int(text)
    return side, side


def _python() -> str:
    return sys.executable


def _subprocess_json(args: list[str], timeout: float) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "wall_s": wall}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    data = json.loads(lines[-1]) if lines else {"error": "no JSON output"}
    data["wall_s"] = wall
    return data


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    arr = np.asarray(values)
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)), "min": float(arr.min()),
            "n": int(arr.size)}


def _worker(spec: dict, timeout: float) -> dict:
    return _subprocess_json([_python(), "-m", "trt_restore.benchmarks.worker", json.dumps(spec)], timeout)


def conv_flops(models: Path, height: int, width: int) -> dict[str, float]:
    """Convolution FLOPs (2 x MACs) of each quality-mode stage at an image size."""
    from trt_restore.calibration.graph_stats import conv_macs
    from trt_restore.model_store import ModelStore

    store = ModelStore.open(models)
    h4, w4 = height // 4 * 4, width // 4 * 4
    shapes = {"vae_a_quality_encoder": {"image": (1, 3, h4, w4)},
              "mapping_quality": {"latent": (1, 64, h4 // 4, w4 // 4)},
              "vae_b_quality_decoder": {"latent": (1, 64, h4 // 4, w4 // 4)}}
    out = {}
    for stage, graphs in STAGE_GRAPHS["quality"].items():
        out[stage] = float(sum(2 * v["macs"] for g in graphs
                               for v in conv_macs(store.graph_path(g), shapes[g]).values()))
    return out


def summarise(raw: dict) -> dict:
    runs = raw.get("runs", [])
    stages = sorted({k for r in runs for k in r["stages_s"]})
    return {
        "total": _stats([r["total_s"] for r in runs]),
        "stages": {s: _stats([r["stages_s"].get(s, 0.0) for r in runs]) for s in stages},
        "peak_rss_mb": raw.get("peak_rss_mb"),
        "rss_loaded_mb": raw.get("rss_loaded_mb"),
        "load_s": raw.get("load_s"),
        "loadavg": raw.get("loadavg"),
        "error": raw.get("error"),
    }


def run_latency(options: BenchOptions, log) -> list[dict]:
    rows = []
    for size in options.sizes:
        height, width = parse_size(size)
        flops = conv_flops(options.models, height, width)
        for config in options.configs:
            row = {"size": size, "height": height, "width": width, "megapixels": round(height * width / 1e6, 3),
                   "config": config, "conv_gflop": {k: round(v / 1e9, 2) for k, v in flops.items()}}
            if config.startswith("torch") and options.weights is None:
                row["skipped"] = "no --weights for the PyTorch reference"
            elif config.startswith("torch") and height * width > options.torch_max_pixels:
                row["skipped"] = (f"PyTorch eager skipped above {options.torch_max_pixels / 1e6:.1f} MP "
                                  f"(minutes per run on this CPU)")
            else:
                spec = {"config": config, "mode": "quality", "height": height, "width": width,
                        "models": str(options.models), "weights": str(options.weights) if options.weights else None,
                        "repeats": options.repeats, "warmup": options.warmup, "threads": options.threads,
                        "budget_s": options.budget_s}
                log(f"latency: {config} at {size} ({width}x{height})")
                row.update(summarise(_worker(spec, options.timeout_s)))
                if row.get("total"):
                    stages = row["stages"]
                    row["conv_gflops_achieved"] = {
                        s: round(flops[s] / 1e9 / stages[s]["median"], 1)
                        for s in flops if s in stages and stages[s].get("median")}
                    row["conv_gflops_achieved"]["end_to_end"] = round(
                        sum(flops.values()) / 1e9 / row["total"]["median"], 1)
            rows.append(row)
    return rows


def run_scratch(options: BenchOptions, log) -> dict:
    height, width = options.scratch_size
    result = {"height": height, "width": width, "megapixels": round(height * width / 1e6, 3), "rows": []}
    latent = (height // 16 * 16 // 4) * (width // 16 * 16 // 4)
    result["latent_positions"] = latent
    result["dense_matrix_gb"] = round(latent ** 2 * 4 / 1e9, 2)
    for config in options.scratch_configs:
        row = {"config": config}
        if config.startswith("torch") and options.weights is None:
            row["skipped"] = "no --weights"
        else:
            available = _available_memory_gb()
            need = 4 * result["dense_matrix_gb"] + 1.5  # f, its softmax, the repeated mask, the product
            if config == "torch-dense" and available is not None and available < need:
                row["skipped"] = (f"needs ~{need:.0f} GB for the dense N x N matrices, {available:.1f} GB available")
            else:
                spec = {"config": config, "mode": "scratch", "height": height, "width": width,
                        "models": str(options.models), "weights": str(options.weights) if options.weights else None,
                        "repeats": max(1, options.repeats - 1), "warmup": 1 if not config.startswith("torch") else 0,
                        "threads": options.threads, "budget_s": 30.0}
                log(f"scratch 0.4 MP: {config}")
                row.update(summarise(_worker(spec, options.timeout_s)))
        result["rows"].append(row)
    return result


def _available_memory_gb() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def prepare_folder(source: Path, target: Path, max_side: int) -> list[Path]:
    """Copies of the photos scaled to at most max_side (the original's dense attention needs
    N^2 memory), each with a drawn scratch mask `<stem>_drawn.png`."""
    import cv2

    from trt_restore.benchmarks.worker import bench_mask
    from trt_restore.io import read_image, write_image

    target.mkdir(parents=True, exist_ok=True)
    made = []
    for path in sorted(p for p in source.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        image = read_image(path)
        scale = min(1.0, max_side / max(image.shape[:2]))
        if scale < 1:
            size = (max(16, int(image.shape[1] * scale)), max(16, int(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        out = target / f"{path.stem}.png"
        write_image(out, image)
        write_image(target / f"{path.stem}_drawn.png",
                    bench_mask(*image.shape[:2], seed=len(made) + 1)[:, :, None].repeat(3, 2))
        made.append(out)
    return made


def run_folder(options: BenchOptions, log, work: Path) -> dict:
    photos = prepare_folder(options.folder, work / "photos", options.folder_max_side)
    result = {"photos": len(photos), "max_side": options.folder_max_side, "mode": "scratch", "rows": []}
    py = _python()
    module = "trt_restore.benchmarks.stages"
    if options.weights is not None:
        log("folder: the original's stage processes (detection, then global restoration)")
        started = time.perf_counter()
        detect = _subprocess_json([py, "-m", module, "original-detect", str(work / "photos"), str(work / "masks"),
                                   "--weights", str(options.weights)], options.timeout_s)
        glob = _subprocess_json([py, "-m", module, "original-global", str(work / "photos"), str(work / "masks"),
                                 str(work / "out_original"), "--weights", str(options.weights)], options.timeout_s)
        result["rows"].append({"config": "original stage processes (PyTorch, dense attention, PNG hand-off)",
                               "key": "original", "wall_s": time.perf_counter() - started,
                               "stages_wall_s": {"detection process": detect.get("wall_s"),
                                                 "global process": glob.get("wall_s")},
                               "peak_rss_mb": max(detect.get("peak_rss_mb", 0), glob.get("peak_rss_mb", 0)),
                               "error": detect.get("error") or glob.get("error")})
    for config in ("torch-fp32", "ort-fp32", "ort-int8"):
        if config.startswith("torch") and options.weights is None:
            continue
        log(f"folder: one warm process, {config}")
        data = _subprocess_json([py, "-m", module, "warm", str(work / "photos"), str(work / f"out_{config}"),
                                 "--models", str(options.models), "--config", config,
                                 "--weights", str(options.weights)], options.timeout_s)
        result["rows"].append({"config": f"one warm process, {config}", "key": config,
                               "wall_s": data.get("wall_s"), "load_s": data.get("load_s"),
                               "per_photo_median_s": float(np.median(data["per_photo_s"])) if data.get("per_photo_s")
                               else None, "peak_rss_mb": data.get("peak_rss_mb"), "error": data.get("error")})
    return result


def environment() -> dict:
    import onnxruntime

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "loadavg_start": os.getloadavg(), "gpu": _gpu()}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def _gpu() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.strip() or None


def run_suite(options: BenchOptions, log=print) -> dict:
    from trt_restore.backends.onnxruntime_backend import OrtBackend
    from trt_restore.model_store import ModelStore

    started = time.perf_counter()
    store = ModelStore.open(options.models)
    configs = list(options.configs)
    if "ort-int8" in configs and not store.manifest.get("int8"):
        log("no INT8 models in the model directory (run `trt-restore quantize`): ort-int8 skipped")
        configs.remove("ort-int8")
        options.scratch_configs = tuple(c for c in options.scratch_configs if c != "ort-int8")
    options.configs = tuple(configs)
    report: dict = {"options": options.to_json(), "environment": environment()}
    log("GEMM microbenchmark")
    gemm = _subprocess_json([_python(), "-m", "trt_restore.benchmarks.gemm", "--size", str(options.gemm_size)]
                            + (["--threads", str(options.threads)] if options.threads else []), options.timeout_s)
    report["gemm"], report["cpu"] = gemm.get("gemm"), gemm.get("cpu")
    report["tensorrt"] = "n/a, no GPU" if report["environment"]["gpu"] is None else "not run by this suite"
    report["latency"] = run_latency(options, log)
    if options.scratch_size:
        report["scratch"] = run_scratch(options, log)
    if options.folder:
        work = options.output / f"{options.name}_work"
        report["folder"] = run_folder(options, log, work)
        shutil.rmtree(work, ignore_errors=True)
    if "ort-int8" in options.configs:
        entries = store.manifest["int8"]["graphs"]
        report["int8_kernels"] = {g: e.get("cpu_kernels_after_fusion") for g, e in entries.items()}
    report["int8_kernel_note"] = int8_kernel_note(report.get("cpu") or {})
    report["ratios"] = ratios(report)
    report["environment"]["loadavg_end"] = os.getloadavg()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    del OrtBackend
    from .report import write_outputs

    write_outputs(report, options.output, options.name)
    return report


def int8_kernel_note(cpu: dict) -> str:
    isa = cpu.get("isa", {})
    if isa.get("amx_int8"):
        gemm = "AMX tiles (MlasGemmU8S8DispatchAmx) for the im2col GEMM path"
    elif isa.get("avx512_vnni"):
        gemm = "AVX512-VNNI (vpdpbusd) GEMM kernels"
    elif isa.get("avx_vnni"):
        gemm = "AVX-VNNI GEMM kernels"
    else:
        gemm = "AVX2 vpmaddubsw/vpmaddwd GEMM kernels (no VNNI: u8 x s8 pairs saturate to int16)"
    conv = ("AVX512-VNNI" if isa.get("avx512_vnni") else "AVX-VNNI" if isa.get("avx_vnni") else "AVX2")
    return (f"onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv (uint8 activations, "
            f"int8 symmetric per-channel weights). Convolutions whose channel counts are multiples of 4 (and >= 16 "
            f"outputs) run MLAS's symmetric indirect-convolution kernel ({conv} variant, NHWC, Transposes inserted "
            f"around it); the others use im2col + {gemm}.")


def ratios(report: dict) -> dict:
    out: dict = {}
    peak = (report.get("gemm") or {}).get("fp32_peak_gflops")
    by = {(r["config"], r["size"]): r for r in report.get("latency", []) if r.get("total")}
    conv_ratio = {}
    for (config, size), row in by.items():
        if config == "ort-fp32" and peak:
            mapping = row.get("conv_gflops_achieved", {}).get("mapping")
            if mapping:
                conv_ratio[size] = round(mapping / peak, 3)
    out["ort_fp32_mapping_conv_throughput_vs_gemm_peak"] = conv_ratio
    out["ort_fp32_vs_torch_fp32_speedup"] = {
        size: round(by[("torch-fp32", size)]["total"]["median"] / by[("ort-fp32", size)]["total"]["median"], 3)
        for (config, size) in by if config == "ort-fp32" and ("torch-fp32", size) in by}
    out["ort_int8_vs_ort_fp32_speedup"] = {
        size: round(by[("ort-fp32", size)]["total"]["median"] / by[("ort-int8", size)]["total"]["median"], 3)
        for (config, size) in by if config == "ort-int8" and ("ort-fp32", size) in by}
    scratch = {r["config"]: r for r in (report.get("scratch") or {}).get("rows", []) if r.get("total")}
    if "torch-dense" in scratch:
        dense = scratch["torch-dense"]["total"]["median"]
        out["scratch_speedup_vs_dense_torch"] = {c: round(dense / r["total"]["median"], 2)
                                                 for c, r in scratch.items() if c != "torch-dense"}
    folder = {r["key"]: r for r in (report.get("folder") or {}).get("rows", []) if r.get("wall_s") and not r.get("error")}
    if "original" in folder:
        base = folder["original"]["wall_s"]
        out["folder_speedup_vs_original_processes"] = {k: round(base / r["wall_s"], 2)
                                                       for k, r in folder.items() if k != "original"}
    return out
