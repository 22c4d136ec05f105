"""Benchmark report: JSON (everything), markdown tables, PNG plot."""
from __future__ import annotations

import json
from pathlib import Path

GOALS = {
    "conv": ("fp32 conv throughput / fp32 GEMM peak", 0.75),
    "torch": ("onnxruntime fp32 vs PyTorch eager", 1.0),
    "scratch": ("scratch 0.4 MP vs dense PyTorch", 3.0),
    "folder": ("folder end to end vs original's stage processes", 2.0),
    "int8": ("INT8 vs fp32 (onnxruntime, end to end)", 2.0),
}


def _s(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def _mb(value) -> str:
    return "—" if value is None else f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB"


def markdown(report: dict) -> str:
    env, gemm, cpu = report["environment"], report.get("gemm") or {}, report.get("cpu") or {}
    lines = [f"# trt-restore benchmark ({report['options']['name']})", ""]
    isa = ", ".join(k for k, v in (cpu.get("isa") or {}).items() if v)
    lines += [f"CPU: {cpu.get('model', '?')}, {cpu.get('cores_available', '?')} cores available ({isa}); "
              f"onnxruntime {env['onnxruntime']}, torch {env.get('torch')}, Python {env['python']}. "
              f"Load average at start {tuple(round(x, 2) for x in env['loadavg_start'])}, at end "
              f"{tuple(round(x, 2) for x in env.get('loadavg_end', (0, 0, 0)))} "
              f"(other work on the machine inflates every number; ratios are taken within this run). "
              f"TensorRT: {report['tensorrt']}.", ""]
    if gemm:
        lines += ["## GEMM microbenchmark (same run)", "",
                  f"{gemm['size']}³, {gemm['threads']} threads, best of repeats.", "",
                  "| kernel | GFLOP/s (int8: GOP/s) |", "|---|---|"]
        lines += [f"| fp32 {k} | {v:.1f} |" for k, v in gemm["fp32_gflops"].items()]
        lines += [f"| int8 {k} | {v:.1f} |" for k, v in gemm["int8_gops"].items()]
        lines += ["", f"fp32 peak used for the ratios: **{gemm['fp32_peak_gflops']:.1f} GFLOP/s** "
                      f"({gemm['fp32_peak_from']}).", ""]
    lines += ["## Latency and memory, quality mode (per stage and end to end)", "",
              "Median (p90) seconds over the repeats, warm-up excluded; peak RSS of the configuration's own "
              "process. Conv GFLOP/s = convolution FLOPs of the stage / its median time.", "",
              "| size | config | end to end s | encode s | mapping s | decode s | peak RSS | mapping conv GFLOP/s |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report.get("latency", []):
        label = f"{row['size']} ({row['width']}x{row['height']})"
        if row.get("skipped") or row.get("error"):
            lines.append(f"| {label} | {row['config']} | {row.get('skipped') or row.get('error')} | | | | | |")
            continue
        st = row["stages"]

        def cell(name):
            s = st.get(name)
            return f"{_s(s['median'])} ({_s(s['p90'])})" if s else "—"

        lines.append(f"| {label} | {row['config']} | {_s(row['total']['median'])} ({_s(row['total']['p90'])}) | "
                     f"{cell('encode')} | {cell('mapping')} | {cell('decode')} | {_mb(row.get('peak_rss_mb'))} | "
                     f"{_s(row.get('conv_gflops_achieved', {}).get('mapping'), 1)} |")
    for size in dict.fromkeys(r["size"] for r in report.get("latency", [])):
        lines.append(f"| {size} | TensorRT fp16 / int8 | {report['tensorrt']} | | | | | |")
    lines.append("")
    if report.get("scratch"):
        sc = report["scratch"]
        lines += [f"## Scratch mode at {sc['megapixels']} MP ({sc['width']}x{sc['height']}, "
                  f"{sc['latent_positions']} latent positions; one dense N x N matrix = {sc['dense_matrix_gb']} GB)", "",
                  "| config | end to end s | attention s | mapping s | peak RSS |", "|---|---|---|---|---|"]
        for row in sc["rows"]:
            if row.get("skipped") or row.get("error"):
                lines.append(f"| {row['config']} | {row.get('skipped') or row.get('error')} | | | |")
                continue
            st = row["stages"]
            lines.append(f"| {row['config']} | {_s(row['total']['median'])} | "
                         f"{_s(st.get('attention', {}).get('median'))} | {_s(st.get('mapping', {}).get('median'))} | "
                         f"{_mb(row.get('peak_rss_mb'))} |")
        lines += ["", "torch-dense: the original's formulation (N x N affinity, softmax, repeated mask, "
                      "renormalised product); torch-fp32: the re-implementation (chunked, invalid keys dropped; "
                      "its attention time is inside 'mapping').", ""]
    if report.get("folder"):
        fo = report["folder"]
        lines += [f"## A folder end to end ({fo['photos']} real old photos, longest side ≤ {fo['max_side']} px, "
                  f"{fo['mode']} mode)", "",
                  "| how | wall s (whole job) | load s | per photo s (median) | peak RSS |", "|---|---|---|---|---|"]
        for row in fo["rows"]:
            lines.append(f"| {row['config']} | {_s(row.get('wall_s'))} | {_s(row.get('load_s'))} | "
                         f"{_s(row.get('per_photo_median_s'))} | {_mb(row.get('peak_rss_mb'))} |"
                         + (f" error: {row['error']}" if row.get("error") else ""))
        lines.append("")
    lines += ["## Goals (ratios measured in this run)", "", "| goal | target | measured | met |", "|---|---|---|---|"]
    r = report.get("ratios", {})
    rows = [  # (ratios key, goal key, label suffix, ratio or speed-up)
        ("ort_fp32_mapping_conv_throughput_vs_gemm_peak", "conv", " (mapping, {})", False),
        ("ort_fp32_vs_torch_fp32_speedup", "torch", " ({})", False),
        ("scratch_speedup_vs_dense_torch", "scratch", ": {}", True),
        ("folder_speedup_vs_original_processes", "folder", ": {}", True),
        ("ort_int8_vs_ort_fp32_speedup", "int8", " ({})", True),
    ]
    for ratios_key, goal, suffix, speedup in rows:
        label, target = GOALS[goal]
        unit, target_text = ("x", f"{target:.0f}x") if speedup else ("", f"{target:.2f}")
        for key, value in r.get(ratios_key, {}).items():
            lines.append(f"| {label}{suffix.format(key)} | ≥ {target_text} | {value:.2f}{unit} | "
                         f"{'yes' if value >= target else 'no'} |")
    lines += ["", "## INT8 kernels", "", report.get("int8_kernel_note", ""), ""]
    for graph, kernels in (report.get("int8_kernels") or {}).items():
        lines.append(f"- {graph}: {kernels}")
    lines += ["", f"Suite time: {report.get('elapsed_s')} s.", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    rows = [r for r in report.get("latency", []) if r.get("total")]
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        axes[0].plot([r["megapixels"] for r in mine], [r["total"]["median"] for r in mine], "o-", label=config)
        axes[1].plot([r["megapixels"] for r in mine], [r.get("peak_rss_mb", 0) / 1024 for r in mine], "o-",
                     label=config)
    for ax, title, unit in ((axes[0], "quality mode, end to end", "seconds (median)"),
                            (axes[1], "peak RSS", "GB")):
        ax.set_xscale("log")
        ax.set_yscale("log" if ax is axes[0] else "linear")
        ax.set_xlabel("megapixels")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    # stacked stages at the largest size every config reached
    largest = {}
    for r in rows:
        if r["megapixels"] >= largest.get(r["config"], {"megapixels": 0})["megapixels"]:
            largest[r["config"]] = r
    names = ["detection", "encode", "mapping", "attention", "decode"]
    bottom = [0.0] * len(largest)
    labels = [f"{c}\n{r['size']}" for c, r in largest.items()]
    for stage in names:
        values = [r["stages"].get(stage, {}).get("median", 0.0) for r in largest.values()]
        if any(values):
            axes[2].bar(labels, values, bottom=bottom, label=stage)
            bottom = [b + v for b, v in zip(bottom, values)]
    axes[2].set_title("per stage (largest size run)")
    axes[2].set_ylabel("seconds (median)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: dict, output: Path, name: str) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(report, indent=1, default=str))
    (output / f"{name}.md").write_text(markdown(report))
    try:
        plot(report, output / f"{name}.png")
    except ImportError:
        (output / f"{name}.png.txt").write_text("matplotlib is not installed: no plot\n")
