"""TensorRT's real ONNX parser and builder over an export, on the CPU, through TensorRT-RTX.

TensorRT-RTX (`tensorrt_rtx_bindings`, the `rtx` extra) parses ONNX and builds plans without a
GPU, so CI runs the project's own build path (engines/builder.py) on every exported graph, its
fp16 copy, the TensorRT Q/DQ models when calibrated, and the tiled executor's per-layer graphs.
What this cannot prove (no sm_87/sm_90 targets, no plugin layers, not a Jetson's TensorRT):
docs/tensorrt.md. tests/test_engines_rtx.py runs a subset by default and all of it under -m slow.

    python -m trt_restore.benchmarks.rtx_check --models MODELS [--out benchmarks/results] [--subset]
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..engines.builder import BuildOptions, GraphPlan, build_engines, build_plan, read_manifest
from ..engines.cache import EngineCache, EngineKey
from ..engines.environment import GpuInfo, build_strategy, tensorrt_version
from ..engines.profiles import GRAPH_IO, Profile, graph_profile
from ..engines.trt_logging import LOG as TRT_LOG

RTX_MODULE = "tensorrt_rtx_bindings"
RTX_GPU = GpuInfo(0, "rtx-cpu-check", "8.9", 0)  # a label for cache keys: RTX needs no GPU to build
MAX_SIZE = (256, 256)  # small profiles: the check is about the parser and the builder, not speed
OPT_SIZE = (128, 128)
SUBSET_GRAPHS = ("vae_a_quality_encoder", "mapping_scratch_head", "mapping_scratch_tail", "mapping_hr_step1",
                 "detection")
SUBSET_LAYERS = ("VAE_A_quality/encoder.1", "VAE_B_quality/decoder.", "mapping_scratch/")  # prefixes: first match
# TensorRT-RTX counts the activation memory against the workspace pool: fp32 detection at the
# default all-aspect profile (2048x2048) needs 5.2 GB and fails with build-engines' 4G default
WORKSPACE = 8 << 30
LAYER_ROWS = (16, 40, 80)  # strip rows min / opt / max of the per-layer profiles
LAYER_WIDTH = (16, 128, 256)


@dataclass
class Row:
    graph: str
    kind: str  # "graph" | "layer"
    precision: str
    onnx: str
    parsed: bool
    built: bool
    build_seconds: float | None
    plan_bytes: int | None
    activation_bytes: int | None  # TensorRT-RTX's "Total Activation Memory" at the max profile
    error: str | None = None
    built_precision: str | None = None  # when models.json keeps the graph in float under int8


def import_rtx():
    return importlib.import_module(RTX_MODULE)


class _Activation(logging.Handler):
    """Reads "Total Activation Memory: N bytes" from TensorRT's log (last build wins)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.value: int | None = None

    def emit(self, record):
        match = re.search(r"Total Activation Memory: (\d+)", record.getMessage())
        if match:
            self.value = int(match.group(1))


@contextmanager
def _activation():
    """TensorRT's INFO lines to an _Activation handler while the block runs."""
    handler, level = _Activation(), TRT_LOG.level
    TRT_LOG.addHandler(handler)
    TRT_LOG.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        TRT_LOG.removeHandler(handler)
        TRT_LOG.setLevel(level)


def _row(graph, kind, precision, onnx, seconds, plan_bytes, activation, error=None) -> Row:
    parsed = error is None or "ONNX parser failed" not in error
    return Row(graph, kind, precision, onnx, parsed, error is None, seconds, plan_bytes, activation, error)


def check_graphs(trt, models: Path, engines: Path, graphs, precisions) -> list[Row]:
    """build_engines (the `build-engines` path) for `graphs` at each precision."""
    rows = []
    activation: dict[str, int | None] = {}
    for precision in precisions:
        with _activation() as handler:
            def on_event(line: str) -> None:  # the last line of a graph comes after its build
                name = line.split(":", 1)[0]
                if name in graphs:
                    activation[name], handler.value = handler.value, None

            report = build_engines(BuildOptions(models, precision=precision, max_size=MAX_SIZE, opt_size=OPT_SIZE,
                                                engines_dir=engines, graphs=tuple(graphs), force=True,
                                                workspace_bytes=WORKSPACE),
                                   trt=trt, gpu=RTX_GPU, on_event=on_event)
        records = {r["graph"]: r for _, r in EngineCache(engines).entries() if r["precision"] == precision}
        for graph in graphs:
            if graph in report.skipped:
                continue
            record = records.get(graph, {})
            error = report.failed.get(graph)
            row = _row(graph, "graph", precision, record.get("onnx", ""), None if error else
                       record.get("build_seconds"), None if error else record.get("engine_bytes"),
                       activation.get(graph), error)
            if not error and record.get("built_precision") not in (None, precision):
                row.built_precision = record["built_precision"]
            rows.append(row)
    return rows


def layer_profile(path: Path) -> Profile:
    """A strip profile for a per-layer graph (input "x", 1 x C x rows x width)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    channels = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    shapes = tuple((1, channels, r, w) for r, w in zip(LAYER_ROWS, LAYER_WIDTH))
    return Profile((("x", *shapes),))


def check_layer(trt, models: Path, engines: Path, layer: str, entry: dict, precision: str) -> Row:
    """build_plan for one per-layer graph (they have no models.json sha256 nor profile rule)."""
    version = tensorrt_version(trt)
    strategy = build_strategy(version, precision)
    source = Path(models) / entry["file"]
    if strategy.onnx_variant == "fp16":
        from ..engines.fp16_onnx import convert_file

        converted = Path(engines) / "onnx" / f"{source.stem}.fp16.onnx"
        if not converted.is_file():
            converted.parent.mkdir(parents=True, exist_ok=True)
            convert_file(source, converted)
        source = converted
    return check_onnx(trt, layer, "layer", source, layer_profile(Path(models) / entry["file"]), precision)


def check_onnx(trt, name: str, kind: str, source: Path, profile: Profile, precision: str) -> Row:
    """build_plan on one ONNX file with a given profile (no cache, no models.json entry)."""
    version = tensorrt_version(trt)
    strategy = build_strategy(version, precision)
    key = EngineKey(name, "", precision, profile, RTX_GPU.name, RTX_GPU.compute_capability, str(version),
                    strategy=strategy.describe())
    plan = GraphPlan(name, source, key, None, source, strategy, precision)
    start = time.perf_counter()
    try:
        with _activation() as handler:
            blob = build_plan(trt, plan, BuildOptions(source.parent, workspace_bytes=WORKSPACE), strategy, version,
                              source.parent / "unused-timing.cache")  # TensorRT-RTX keeps no timing cache
    except Exception as err:  # noqa: BLE001 - one row per file
        return _row(name, kind, precision, source.name, None, None, None, str(err))
    return _row(name, kind, precision, source.name, round(time.perf_counter() - start, 2), len(blob),
                handler.value)


def check_int8(trt, models: Path, engines: Path) -> list[Row]:
    """The TensorRT Q/DQ models (`qdq_file`) through build-engines --precision int8, and the
    onnxruntime uint8 `.qdq.onnx` files, which TensorRT must refuse (asymmetric zero points)."""
    manifest = read_manifest(models)
    graphs = [g for g in manifest.get("graphs", {}) if g in GRAPH_IO]
    rows = [r for r in check_graphs(trt, models, engines, graphs, ["int8"])]
    for graph, entry in manifest.get("int8", {}).get("graphs", {}).items():
        if entry.get("file") and graph in GRAPH_IO:
            rows.append(check_onnx(trt, graph, "uint8 Q/DQ (must be refused)", Path(models) / entry["file"],
                                   graph_profile(graph, MAX_SIZE, OPT_SIZE), "int8"))
    return rows


def subset_layers(layers: dict) -> list[str]:
    return [next(name for name in layers if name.startswith(prefix)) for prefix in SUBSET_LAYERS
            if any(name.startswith(prefix) for name in layers)]


def run_check(models: Path, engines: Path | None = None, subset: bool = False, trt=None,
              layer_precisions=("fp32",), on_row=lambda row: None) -> list[Row]:
    """Every graph (or the subset) at fp32 and fp16, int8 where Q/DQ models exist, and the
    per-layer graphs; returns one Row per build."""
    trt = trt or import_rtx()
    models = Path(models)
    manifest = read_manifest(models)
    engines = Path(engines or tempfile.mkdtemp(prefix="rtx-check-"))
    graphs = [g for g in manifest.get("graphs", {}) if g in GRAPH_IO and (not subset or g in SUBSET_GRAPHS)]
    precisions = ["fp32", "fp16"]
    if any(manifest["graphs"][g].get("qdq_file") for g in graphs):
        precisions.append("int8")
    rows = []
    for row in check_graphs(trt, models, engines, graphs, precisions):
        rows.append(row)
        on_row(row)
    layers = manifest.get("layers", {})
    for layer in (subset_layers(layers) if subset else list(layers)):
        for precision in layer_precisions:
            rows.append(check_layer(trt, models, engines, layer, layers[layer], precision))
            on_row(rows[-1])
    return rows


def as_expected(row: Row) -> bool:
    """Built, or refused when it must be (the uint8 onnxruntime Q/DQ files)."""
    return row.built != row.kind.startswith("uint8")


def _mb(value) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"


def write_results(rows: list[Row], out: Path, trt, models: Path, seconds: float,
                  command: str = "python -m trt_restore.benchmarks.rtx_check --models MODELS") -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    version = tensorrt_version(trt)
    meta = {"tensorrt": version.label, "max_size": list(MAX_SIZE), "opt_size": list(OPT_SIZE),
            "layer_profile": {"rows": list(LAYER_ROWS), "width": list(LAYER_WIDTH)}, "models": str(models),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU", "load_average": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "total_seconds": round(seconds, 1),
            "command": command}
    json_path = out / "rtx_check.json"
    json_path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    ok = sum(as_expected(r) for r in rows)
    lines = [f"# TensorRT-RTX parse + build check ({meta['date'][:10]})", "",
             f"{version.label} on {meta['machine']} (load {meta['load_average']:.1f}); "
             f"`{command}`. Graph profiles as "
             f"`build-engines --max-size {MAX_SIZE[0]}x{MAX_SIZE[1]} --opt-size {OPT_SIZE[0]}x{OPT_SIZE[1]}`; "
             f"per-layer graphs: strips of {LAYER_ROWS[0]}-{LAYER_ROWS[2]} rows, {LAYER_WIDTH[0]}-{LAYER_WIDTH[2]} px "
             f"wide; workspace {WORKSPACE >> 30} GiB. Activation memory: what RTX reports for the max "
             f"profile. The run took {seconds:.0f} s. What this check cannot prove: docs/tensorrt.md.", "",
             f"{ok} of {len(rows)} as expected (built, or refused where TensorRT must refuse).", "",
             "| graph | kind | precision | ONNX | parse | build (s) | plan (MB) | activation (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        build = (f"{r.build_seconds:.2f}" if r.built and r.build_seconds is not None
                 else "ok" if r.built else "-" if as_expected(r) else "FAILED")
        precision = f"{r.precision} (built {r.built_precision}: models.json)" if r.built_precision else r.precision
        parse = "ok" if r.parsed else "refused" if as_expected(r) else "FAILED"
        lines.append(f"| {r.graph} | {r.kind} | {precision} | {r.onnx} | {parse} | {build} | {_mb(r.plan_bytes)} "
                     f"| {_mb(r.activation_bytes)} |")
    failed = [r for r in rows if not r.built]
    if failed:
        lines += ["", "Not built (first line of the error):", ""] + [
            f"- {r.graph} ({r.kind}, {r.precision}){'' if as_expected(r) else ' UNEXPECTED'}: "
            f"{(r.error or '').splitlines()[0][:300]}" for r in failed]
    md_path = out / "rtx_check.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--engines", type=Path, default=None, help="where plans go (default: a temp folder)")
    parser.add_argument("--subset", action="store_true", help="the default test suite's subset only")
    parser.add_argument("--int8-models", type=Path, default=None, help="a quantized model directory "
                        "(`trt-restore quantize`): its Q/DQ models are built too")
    parser.add_argument("--layer-precisions", default="fp32", help="comma-separated, e.g. fp32,fp16")
    args = parser.parse_args(argv)
    trt = import_rtx()
    start = time.perf_counter()
    rows = run_check(args.models, args.engines, args.subset, trt, tuple(args.layer_precisions.split(",")),
                     on_row=lambda r: print(f"{r.graph} {r.precision}: "
                                            f"{'ok' if r.built else 'FAILED ' + str(r.error)} {r.build_seconds}",
                                            flush=True))
    if args.int8_models:
        rows += check_int8(trt, args.int8_models, Path(tempfile.mkdtemp(prefix="rtx-check-int8-")))
    command = "python -m trt_restore.benchmarks.rtx_check --models MODELS" + (
        " --int8-models QUANTIZED" if args.int8_models else "") + f" --layer-precisions {args.layer_precisions}"
    json_path, md_path = write_results(rows, args.out, trt, args.models, time.perf_counter() - start, command)
    print(f"{sum(as_expected(r) for r in rows)}/{len(rows)} as expected -> {md_path}, {json_path}")
    return 0 if all(as_expected(r) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
