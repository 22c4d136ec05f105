"""Build TensorRT engines for the exported graphs (`trt-restore build-engines`).

For every graph of the model directory: compute its optimisation profile (profiles.py) and
its cache key (cache.py: model sha256 from models.json, precision, profile, GPU name +
compute capability, TensorRT version); reuse a valid cached plan, else parse the ONNX with
TensorRT's parser and build with one optimisation profile and the persistent timing cache.

TensorRT 10.x (JetPack 6 ships 10.3) and 11.x differ in how precision is chosen
(environment.build_strategy): 10.x sets FP16/INT8 builder flags on the fp32 ONNX, 11.x builds
a strongly typed network from an fp16 (or Q/DQ) ONNX; TensorRT-RTX (1.x) builds like 11.x, which
is how CI runs the real parser and builder on a CPU (tests/test_engines_rtx.py). Under int8 each
graph is built at its models.json precision (runtime/graph_precision.py); graphs without a Q/DQ
model are skipped with the reason. The TensorRT module and the GPU probe are injected, so
everything but the TensorRT calls runs and is tested without either.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cache import CacheStatus, EngineCache, EngineKey, model_digest, sha256_file
from .environment import (BuildStrategy, GpuInfo, TensorRTUnavailable, TrtVersion, build_strategy, gpu_info,
                          import_tensorrt, tensorrt_version)
from .profiles import (DEFAULT_MAX_ASPECT, DEFAULT_MAX_SIZE, DEFAULT_OPT_SIZE, DEFAULT_STRIP_ROWS,
                       DEFAULT_TILED_MAX_SIDE, GRAPH_IO, Profile, graph_profile, op_profile,
                       strip_layer_profile)
from .trt_logging import collected_errors, trt_logger
from ..graph_precision import graph_precision

MANIFEST = "models.json"
DEFAULT_WORKSPACE = 4 << 30


class BuildError(RuntimeError):
    pass


@dataclass
class BuildOptions:
    models_dir: Path
    precision: str = "fp16"
    max_size: tuple[int, int] = DEFAULT_MAX_SIZE
    opt_size: tuple[int, int] = DEFAULT_OPT_SIZE
    max_aspect: float = DEFAULT_MAX_ASPECT  # detection: longest photo side / shortest it accepts
    version_compatible: bool = False
    engines_dir: Path | None = None
    graphs: tuple[str, ...] | None = None  # default: every graph of models.json with a profile rule
    workspace_bytes: int = DEFAULT_WORKSPACE
    force: bool = False
    layers: bool | None = None  # per-layer graphs (tiling); None: when the export has them and no `graphs`
    strip_rows: int = DEFAULT_STRIP_ROWS  # output rows of the largest strip the layer engines take
    tiled_max_side: int = DEFAULT_TILED_MAX_SIDE  # widest photo the layer engines take (pixels)

    @property
    def cache_root(self) -> Path:
        return Path(self.engines_dir) if self.engines_dir else Path(self.models_dir) / "engines"


@dataclass
class GraphPlan:
    graph: str
    onnx: Path
    key: EngineKey | None
    status: CacheStatus | None
    source_onnx: Path = field(default=None)  # the file actually parsed (converted variants differ)
    strategy: BuildStrategy | None = None  # how this graph's precision is obtained
    precision: str = ""  # what this graph is built at (int8 runs keep some graphs in float)
    note: str | None = None  # why `precision` differs from the requested one
    skipped: str | None = None  # why nothing is built for this graph
    generate: Callable[[Path], None] | None = None  # writes `onnx` when it is generated here (strip graphs)


def read_manifest(models_dir: Path) -> dict:
    path = Path(models_dir) / MANIFEST
    if not path.is_file():
        raise BuildError(f"{path}: no model manifest; export the models first (`trt-restore export -o {models_dir}`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BuildError(f"{path}: unreadable manifest ({err})") from None


def onnx_variant_path(models_dir: Path, entry: dict, variant: str, engines_dir: Path) -> Path:
    """Where the ONNX for a strategy comes from: the export itself (fp32), a converted fp16 copy
    in the engine cache, or the calibrated Q/DQ model named in models.json (`qdq_file`)."""
    base = Path(models_dir) / entry["file"]
    if variant == "fp32":
        return base
    if variant == "fp16":
        return Path(engines_dir) / "onnx" / f"{base.stem}.{entry['sha256'][:16]}.fp16.onnx"
    qdq = entry.get("qdq_file")
    if not qdq:
        raise BuildError(f"{base.name}: int8 needs a calibrated Q/DQ model (models.json `qdq_file`), "
                         f"made by the calibration step; none is listed")
    return Path(models_dir) / qdq


def plan_builds(options: BuildOptions, gpu: GpuInfo, version: TrtVersion) -> list[GraphPlan]:
    """Key and cache state of every graph to build (no TensorRT call)."""
    manifest = read_manifest(options.models_dir)
    graphs = manifest.get("graphs", {})
    chosen = options.graphs or tuple(name for name in graphs if name in GRAPH_IO)
    if not chosen:
        raise BuildError(f"{options.models_dir}/{MANIFEST} lists no graph that has an engine profile")
    cache = EngineCache(options.cache_root)
    plans = []
    for name in chosen:
        if name not in graphs:
            raise BuildError(f"graph {name!r} is not in {options.models_dir}/{MANIFEST}; re-run `trt-restore export`")
        entry = graphs[name]
        onnx_path = Path(options.models_dir) / entry["file"]
        if not onnx_path.is_file():
            raise BuildError(f"{onnx_path}: listed in {MANIFEST} but missing")
        if not entry.get("sha256"):
            raise BuildError(f"{onnx_path}: no sha256 in {MANIFEST}; re-run `trt-restore export`")
        chosen_precision = graph_precision(manifest, name, options.precision, "tensorrt")
        if chosen_precision.precision is None:
            plans.append(GraphPlan(name, onnx_path, None, None, skipped=chosen_precision.reason))
            continue
        strategy = build_strategy(version, chosen_precision.precision)
        described = strategy.describe()
        if chosen_precision.reason:
            described += f"; built {chosen_precision.precision} (models.json per-graph precision)"
        profile = graph_profile(name, options.max_size, options.opt_size, options.max_aspect)
        source = onnx_variant_path(options.models_dir, entry, strategy.onnx_variant, options.cache_root)
        # keyed under the requested precision: that is what the backend looks up
        digest = model_digest(options.models_dir, entry, options.precision)
        key = EngineKey(graph=name, model_sha256=digest, precision=options.precision, profile=profile,
                        gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                        tensorrt_version=str(version), version_compatible=options.version_compatible,
                        strategy=described)
        plans.append(GraphPlan(name, onnx_path, key, cache.status(key), source, strategy,
                               chosen_precision.precision, chosen_precision.reason))
    if _wants_layers(options, manifest):
        plans += plan_layer_builds(options, manifest, gpu, version, cache)
    if all(plan.skipped for plan in plans):
        raise BuildError(f"nothing to build at {options.precision}: {plans[0].skipped}"
                         + (f" (and {len(plans) - 1} more graph(s) alike)" if len(plans) > 1 else ""))
    return plans


def _wants_layers(options: BuildOptions, manifest: dict) -> bool:
    if options.layers is None:
        return bool(manifest.get("layers")) and not options.graphs
    if options.layers and not manifest.get("layers"):
        raise BuildError(f"{options.models_dir}/{MANIFEST} lists no per-layer graphs; re-run `trt-restore export` "
                         f"(tiled layers are on by default)")
    return options.layers


def layer_precision(requested: str) -> tuple[str, str | None]:
    """Per-layer graphs have no Q/DQ models: under int8 they are built fp16 (onnxruntime runs
    them in float too), keyed int8 so the backend finds them."""
    if requested == "int8":
        return "fp16", "per-layer graphs have no calibrated Q/DQ model; built fp16"
    return requested, None


def plan_layer_builds(options: BuildOptions, manifest: dict, gpu: GpuInfo, version: TrtVersion,
                      cache: EngineCache) -> list[GraphPlan]:
    """One strip-profile plan per per-layer graph (models.json `layers`), wrapped with the
    pending normalisation and the strip statistics (engines/strip_graphs.py) and keyed by the
    layer file's sha256 and the wrapping's version (the export records none for layers), plus
    the pointwise op graphs (`strip/copy`, `strip/add`, `strip/blend`) the device executor runs."""
    from .strip_graphs import OPS, op_digest, op_graph_name, wrapped_digest, write_op_graph, write_wrapped_layer

    plans = []
    precision, note = layer_precision(options.precision)
    strategy = build_strategy(version, precision)
    described = strategy.describe() + (f"; built {precision} (per-layer graph)" if note else "")
    strips = Path(options.cache_root) / "strip_graphs"

    def plan(name: str, digest: str, profile: Profile, onnx_path: Path, generate) -> GraphPlan:
        source = onnx_variant_path(options.models_dir, {"file": str(onnx_path), "sha256": digest},
                                   strategy.onnx_variant, options.cache_root)
        key = EngineKey(graph=name, model_sha256=digest, precision=options.precision, profile=profile,
                        gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                        tensorrt_version=str(version), version_compatible=options.version_compatible,
                        strategy=described)
        return GraphPlan(name, onnx_path, key, cache.status(key), source, strategy, precision, note,
                         generate=generate)

    for name, entry in manifest["layers"].items():
        layer_path = Path(options.models_dir) / entry["file"]
        if not layer_path.is_file():
            raise BuildError(f"{layer_path}: listed in {MANIFEST} (layers) but missing; re-run `trt-restore export`")
        digest = wrapped_digest(sha256_file(layer_path))
        wrapped = strips / f"{layer_path.stem}.{digest[:16]}.strip.onnx"
        profile = strip_layer_profile(name, options.tiled_max_side, options.strip_rows, max(options.opt_size))
        plans.append(plan(name, digest, profile, wrapped,
                          lambda target, source=layer_path: write_wrapped_layer(source, target)))
    for kind in OPS:
        digest = op_digest(kind)
        profile = op_profile(kind, options.tiled_max_side, options.strip_rows, max(options.opt_size))
        plans.append(plan(op_graph_name(kind), digest, profile, strips / f"strip_{kind}.{digest[:16]}.onnx",
                          lambda target, kind=kind: write_op_graph(kind, target)))
    return plans


def prepare_source(plan: GraphPlan) -> Path:
    """Write the ONNX a plan parses when it is generated (wrapped layer / op graph, its fp16
    copy) and return its path."""
    if plan.generate is not None and not Path(plan.onnx).is_file():
        plan.generate(plan.onnx)
    if plan.strategy is not None and plan.strategy.onnx_variant == "fp16" and not Path(plan.source_onnx).is_file():
        from .fp16_onnx import convert_file
        from .strip_graphs import FP32_TAIL

        Path(plan.source_onnx).parent.mkdir(parents=True, exist_ok=True)
        convert_file(plan.onnx, plan.source_onnx, **({"fp32_tail": FP32_TAIL} if plan.generate else {}))
    if not Path(plan.source_onnx).is_file():
        raise BuildError(f"{plan.source_onnx}: not found")
    return Path(plan.source_onnx)


class _Progress:
    """Adapter from TensorRT's IProgressMonitor to a callback(graph, phase, step, steps)."""

    @staticmethod
    def make(trt, graph: str, callback: Callable[[str, str, int, int], None]):
        base = getattr(trt, "IProgressMonitor", None)
        if base is None or callback is None:
            return None

        class Monitor(base):  # type: ignore[misc, valid-type]
            def __init__(self):
                base.__init__(self)
                self.steps: dict[str, int] = {}

            def phase_start(self, phase_name, parent_phase, num_steps):
                self.steps[phase_name] = num_steps
                callback(graph, phase_name, 0, num_steps)

            def step_complete(self, phase_name, step):
                callback(graph, phase_name, step + 1, self.steps.get(phase_name, 0))
                return True

            def phase_finish(self, phase_name):
                callback(graph, phase_name, self.steps.get(phase_name, 0), self.steps.get(phase_name, 0))

        return Monitor()


def _flag(trt, name: str):
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise BuildError(f"TensorRT {trt.__version__} has no BuilderFlag.{name}")
    return flag


def _create_network(trt, builder, strategy: BuildStrategy, version: TrtVersion):
    if version.strongly_typed_only:
        return builder.create_network(0)  # strongly typed is the only mode (11.x, TensorRT-RTX)
    flags = 0
    if strategy.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return builder.create_network(flags)


def build_plan(trt, plan: GraphPlan, options: BuildOptions, strategy: BuildStrategy, version: TrtVersion,
               timing_cache_path: Path, logger=None, progress: Callable | None = None) -> bytes:
    """Parse + build one graph; returns the serialized plan. Updates the timing cache file.
    TensorRT's messages go to the "trt_restore.tensorrt" logger unless `logger` is given."""
    logger = logger or trt_logger(trt)
    builder = trt.Builder(logger)
    network = _create_network(trt, builder, strategy, version)
    parser = trt.OnnxParser(network, logger)
    if not Path(plan.source_onnx).is_file():
        raise BuildError(f"{plan.source_onnx}: not found")
    if not parser.parse_from_file(str(plan.source_onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"{plan.source_onnx}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    for name in strategy.builder_flags:
        config.set_flag(_flag(trt, name))
    for name in strategy.clear_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is not None:
            config.clear_flag(flag)
    if options.version_compatible:
        config.set_flag(_flag(trt, "VERSION_COMPATIBLE"))
    profile = builder.create_optimization_profile()
    for name, lo, opt, hi in plan.key.profile.shapes:
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    timed = not version.rtx  # TensorRT-RTX: timing caches are deprecated no-ops (it tunes on the device)
    if timed:
        _use_timing_cache(config, timing_cache_path)
    monitor = _Progress.make(trt, plan.graph, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    with collected_errors() as errors:
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = f": {errors[-1]}" if errors else " (see the TensorRT log above)"
        raise BuildError(f"{plan.graph}: TensorRT could not build an engine{why}")
    updated = config.get_timing_cache() if timed else None
    if updated is not None:
        data = bytes(updated.serialize())
        timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = timing_cache_path.with_name(f".{timing_cache_path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(timing_cache_path)
    return bytes(serialized)


def _use_timing_cache(config, path: Path) -> None:
    """Seed the build with the persistent timing cache (a corrupt or foreign file: start afresh)."""
    blob = path.read_bytes() if path.is_file() else b""
    try:
        timing_cache = config.create_timing_cache(blob)
    except Exception:  # noqa: BLE001
        timing_cache = None
    if timing_cache is None:
        timing_cache = config.create_timing_cache(b"")
    config.set_timing_cache(timing_cache, False)


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # graph -> why no engine is built (int8 without Q/DQ)
    engines: dict[str, Path] = field(default_factory=dict)


def build_engines(options: BuildOptions, trt=None, gpu: GpuInfo | None = None,
                  on_event: Callable[[str], None] = print, progress: Callable | None = None) -> BuildReport:
    """Build (or reuse) the engines; per-graph failures are collected, not raised."""
    trt = trt or import_tensorrt(require_builder=True)
    gpu = gpu or gpu_info()
    version = tensorrt_version(trt)
    strategy = build_strategy(version, options.precision)
    plans = plan_builds(options, gpu, version)
    cache = EngineCache(options.cache_root)
    timing = cache.timing_cache_path(gpu.slug, str(version))
    on_event(f"{version.label} on {gpu.name} (sm {gpu.compute_capability}): {options.precision} "
             f"({strategy.describe()}), {len(plans)} graph(s), cache {cache.root}")
    report = BuildReport()
    for plan in plans:
        if plan.skipped:
            report.skipped[plan.graph] = plan.skipped
            on_event(f"{plan.graph}: skipped: {plan.skipped}")
            continue
        if plan.note:
            on_event(f"{plan.graph}: {plan.precision}, not {options.precision}: {plan.note}")
        if plan.status.valid and not options.force:
            report.reused.append(plan.graph)
            report.engines[plan.graph] = plan.status.engine
            on_event(f"{plan.graph}: cached ({plan.status.engine.name})")
            continue
        if plan.status.state != "missing":
            on_event(f"{plan.graph}: rebuilding, cached plan is {plan.status.state}: {plan.status.reason}")
        try:
            prepare_source(plan)
            start = time.perf_counter()
            blob = build_plan(trt, plan, options, plan.strategy, version, timing, progress=progress)
            seconds = time.perf_counter() - start
            status = cache.store(plan.key, blob, {"build_seconds": round(seconds, 2),
                                                  "onnx": str(plan.source_onnx.name),
                                                  "built_precision": plan.precision,
                                                  "precision_reason": plan.note,
                                                  "workspace_bytes": options.workspace_bytes,
                                                  **_layer_fields(plan, options)})
            report.built.append(plan.graph)
            report.engines[plan.graph] = status.engine
            for old in cache.remove_superseded(plan.key):
                on_event(f"{plan.graph}: removed {old.name}, built for other settings of this profile")
            on_event(f"{plan.graph}: built in {seconds:.0f} s ({len(blob) / 1e6:.1f} MB)")
        except Exception as err:  # noqa: BLE001 - report per graph, go on with the others
            report.failed[plan.graph] = str(err)
            on_event(f"{plan.graph}: FAILED: {err}")
    return report


def _layer_fields(plan: GraphPlan, options: BuildOptions) -> dict:
    """Sidecar fields of a per-layer plan: the backend caps the executor's strips with them."""
    if "/" not in plan.graph:
        return {}
    return {"kind": "layer", "strip_rows": options.strip_rows}


def describe_unavailable() -> str | None:
    """One line saying why engines cannot be built here, or None when they can."""
    try:
        import_tensorrt(require_builder=True)
        gpu_info()
    except (TensorRTUnavailable, Exception) as err:  # noqa: BLE001
        return str(err)
    return None


def profile_summary(profile: Profile) -> str:
    return ", ".join(f"{name} {'x'.join(map(str, lo))}..{'x'.join(map(str, hi))}" for name, lo, _, hi in profile.shapes)
