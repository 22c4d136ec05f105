"""INT8 through explicit quantization: Q/DQ ONNX models from a calibration set.

Tool: onnxruntime.quantization.quantize_static in QDQ format (int8 symmetric per-channel
weights, uint8 activations, percentile-calibrated ranges). ModelOpt's ONNX PTQ was measured
too (benchmarks/README.md): it places Q/DQ on Conv inputs only, which TensorRT wants but which
onnxruntime's CPU provider cannot fuse into integer kernels, and it was not more accurate.

What stays in fp32, per graph (recorded in models.json, `int8` section):
- InstanceNormalization (statistics over the whole frame), activations, Pad/Add/Concat/Resize,
  ConvTranspose (no integer CPU kernel): only Conv is quantized;
- the attention of the scratch/HR mappings (numpy between the graphs, never quantized);
- by default the boundary convs: those reading a graph input that is an image (3- or
  1-channel: too few channels for the integer kernels, and the picture's precision) and those
  writing a graph output (the decoded image, the mapped latent, the attention projections).

Feeds for every graph come from running the fp32 pipeline on the calibration set (quality,
scratch and HR mode with the set's own scratch masks), so each segment is calibrated on
exactly the tensors it sees in production. Ranges are cached per (graph hash, calibration
fingerprint, method): a rebuild with other fp32 exclusions, or a repeated build, does not run
calibration again; an unchanged build is skipped altogether.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..backends.base import Backend
from ..modes import DETECTOR, SPECS
from .dataset import CalibrationSet
from .graph_stats import conv_macs, op_counts, optimized_op_counts

QUANTIZER_VERSION = 1
INT8_DIR = "int8"
CACHE_DIR = "int8/cache"
HOLDOUT = 2  # last calibration items: validation only


def _mode_of_graph() -> dict[str, str]:
    """graph -> the first mode that runs it (detection on its own): which pipeline records its inputs."""
    table = {DETECTOR: "detection"}
    for mode, spec in SPECS.items():
        for graph in spec.graphs:
            table.setdefault(graph, mode)
    return table


MODE_OF_GRAPH = _mode_of_graph()
GLOBAL_GRAPHS = tuple(MODE_OF_GRAPH)
IMAGE_INPUTS = ("image", "gray")


class QuantizeError(RuntimeError):
    pass


@dataclass(frozen=True)
class QuantizeOptions:
    method: str = "percentile"  # percentile | minmax | entropy
    percentile: float = 99.99
    limit: int | None = None  # first N calibration items only
    graphs: tuple[str, ...] | None = None
    keep_boundary_fp32: bool = True
    extra_fp32_nodes: dict = field(default_factory=dict)  # graph -> node names kept in fp32
    force: bool = False
    chunk: int = 2  # calibration items per calibrator pass (bounds memory)
    # ("Conv", "Pad") moves reflection padding onto uint8: measured slower (more Q/DQ nodes survive
    # the fusion) and no more accurate, so only Conv by default
    op_types: tuple[str, ...] = ("Conv",)
    # whole graphs the runtime keeps in fp32 although a Q/DQ model is built (for TensorRT and for
    # the accuracy table): the encoder's INT8 error is amplified by the mapping (measured alone:
    # 17 dB end to end, vs 35 dB for the INT8 decoder) and it is a few percent of the time
    fp32_graphs: tuple[str, ...] = ("vae_a_quality_encoder",)

    def calibration_key(self) -> dict:
        return {"method": self.method, "percentile": self.percentile if self.method == "percentile" else None,
                "limit": self.limit, "holdout": HOLDOUT, "op_types": sorted(self.op_types)}


# ---- feeds ---------------------------------------------------------------------------------

class RecordingBackend(Backend):
    """Wraps a backend and keeps a copy of the inputs of every call, per graph, tagged with the
    calibration item being processed (`item`): a graph may run several times per item (the
    encoder in every mode), and calibration/validation are split by item."""

    def __init__(self, backend: Backend, wanted: set[str]):
        self.backend = backend
        self.wanted = wanted
        self.item = 0
        self.feeds: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {}
        self.store = backend.store
        self.name = backend.name

    def masked_attention(self, *args, **kwargs) -> np.ndarray:
        return self.backend.masked_attention(*args, **kwargs)

    def patch_match(self, *args, **kwargs) -> np.ndarray:
        return self.backend.patch_match(*args, **kwargs)

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph in self.wanted:
            self.feeds.setdefault(graph, []).append(
                (self.item, {k: np.ascontiguousarray(v, dtype=np.float32).copy() for k, v in inputs.items()}))
        return self.backend.run(graph, inputs)

    def describe(self) -> str:
        return "recording " + self.backend.describe()


def collect_feeds(models_dir: Path, calibration: CalibrationSet, graphs: set[str], indices: list[int],
                  on_item: Callable[[int], None] = lambda i: None) -> dict[str, list[tuple[int, dict]]]:
    """Run the fp32 pipeline over the given calibration items, recording (item, graph inputs)."""
    from ..backends.onnxruntime_backend import OrtBackend
    from ..global_restoration import GlobalRestorer
    from ..preprocess import resize_to_multiple
    from ..scratch_detection import detect_scratches

    recorder = RecordingBackend(OrtBackend(models_dir), graphs)
    modes = {MODE_OF_GRAPH[g] for g in graphs}
    if "vae_a_quality_encoder" in graphs:
        modes.add("quality")
    restorers = {m: GlobalRestorer(recorder, m) for m in ("quality", "scratch", "hr") if m in modes}
    for done, index in enumerate(indices):
        recorder.item = index
        image, mask = calibration.load(index)
        if "detection" in modes:
            detect_scratches(recorder, resize_to_multiple(image, 16, "bicubic"))
        for mode, restorer in restorers.items():
            restorer.restore(image, mask=mask if mode != "quality" else None)
        on_item(done)
    return recorder.feeds


class _Reader:
    """onnxruntime CalibrationDataReader over recorded feeds, with the range interface that
    lets the calibrator see a few items at a time."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self.start, self.end = 0, len(feeds)
        self._iter = None

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, end_index
        self._iter = None

    def get_next(self):
        if self._iter is None:
            self._iter = iter(self.feeds[self.start:self.end])
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


# ---- choices -------------------------------------------------------------------------------

def boundary_convs(model_path: Path, pads: bool = False) -> dict[str, str]:
    """Conv nodes kept in fp32 by default, with the reason (and, when Pad is quantized too, the
    Pads that feed an fp32 layer)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inputs = {v.name for v in model.graph.input}
    outputs = {v.name for v in model.graph.output}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def reaches_input(name: str, depth: int = 0) -> str | None:
        """Follow Pad/Reshape-like single-input ops back to a graph input."""
        if name in inputs:
            return name
        node = producers.get(name)
        if node is None or depth > 3 or node.op_type not in ("Pad", "Identity", "Cast"):
            return None
        return reaches_input(node.input[0], depth + 1)

    def reaches_output(name: str, depth: int = 0) -> str | None:
        """Follow single-consumer activations (Tanh of the decoder, Sigmoid of the detector) forward."""
        if name in outputs:
            return name
        users = consumers.get(name, [])
        if depth > 2 or len(users) != 1 or users[0].op_type not in ("Tanh", "Sigmoid", "Relu", "Identity", "Clip"):
            return None
        return reaches_output(users[0].output[0], depth + 1)

    kept = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        source = reaches_input(node.input[0])
        target = reaches_output(node.output[0])
        if source in IMAGE_INPUTS:
            kept[node.name] = f"reads the {source} input (too few channels for the integer kernels; picture precision)"
        elif target is not None:
            kept[node.name] = f"writes the graph output {target!r} (no requantisation of the result)"
    for node in model.graph.node if pads else ():  # Pad on uint8 only where an INT8 conv reads it
        users = consumers.get(node.output[0], [])
        if node.op_type == "Pad" and not all(u.op_type == "Conv" and u.name not in kept for u in users):
            kept[node.name] = "pads the input of an fp32 layer"
    return kept


# ---- build ---------------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
             "entropy": CalibrationMethod.Entropy}
    if name not in table:
        raise QuantizeError(f"unknown calibration method {name!r} (choose {', '.join(table)})")
    return table[name]


def _feed_shapes(feed: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in feed.items()}


def validate(fp32_path: Path, qdq_path: Path, feeds: list[dict]) -> dict:
    """Relative L2 error and max |diff| of every output, Q/DQ vs fp32, on held-out feeds."""
    import onnxruntime as ort

    def session(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 0
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    reference, quantized = session(fp32_path), session(qdq_path)
    names = [o.name for o in reference.get_outputs()]
    errors = {n: [] for n in names}
    for feed in feeds:
        for name, a, b in zip(names, reference.run(names, feed), quantized.run(names, feed)):
            errors[name].append(float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-12)))
    per_output = {n: round(float(np.mean(v)), 6) for n, v in errors.items()}
    return {"rel_error": max(per_output.values()), "per_output": per_output, "items": len(feeds)}


FLAVOURS = {  # file suffix, activation type, symmetric activations
    "onnxruntime": (".qdq.onnx", "QUInt8", False),  # uint8 + zero point: onnxruntime's fastest CPU kernels
    "tensorrt": (".trt.qdq.onnx", "QInt8", True),  # TensorRT's explicit quantization: int8, zero point 0
}


def quantize_graph(name: str, fp32_path: Path, out_dir: Path, cache_path: Path, feeds: list[dict] | None,
                   options: QuantizeOptions, fp32_nodes: dict[str, str], flavour: str = "onnxruntime") -> Path:
    """Calibrate (or load cached ranges) and write the Q/DQ model of one flavour; returns its path.
    Both flavours share the calibrated ranges (the cache), only the mapping to int8 differs."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    suffix, activation_type, activation_symmetric = FLAVOURS[flavour]
    extra = {
        "WeightSymmetric": True,  # zero-point 0: onnxruntime's symmetric conv kernels, and TensorRT's rule
        "ActivationSymmetric": activation_symmetric,
        # TensorRT: biases stay float (its Q/DQ are int8 only; an int32 bias DequantizeLinear is not)
        "QuantizeBias": flavour != "tensorrt",
        "CalibStridedMinMax": options.chunk,
    }
    if options.method == "percentile":
        extra["CalibPercentile"] = options.percentile
    reader = _Reader(feeds) if feeds is not None else None
    if reader is not None and len(reader) % options.chunk:
        extra["CalibStridedMinMax"] = 1
    if reader is None:
        extra.pop("CalibStridedMinMax")
    tmp = out_dir / f"{name}{suffix}.tmp"
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # the quantizer's pre-processing advice
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # histogram progress prints
            quantize_static(str(fp32_path), str(tmp), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(options.op_types), per_channel=True, reduce_range=False,
                            activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8,
                            nodes_to_exclude=sorted(fp32_nodes), calibrate_method=_method(options.method),
                            extra_options=extra, calibration_cache_path=str(cache_path))
    finally:
        root_logger.setLevel(level)
    final = out_dir / f"{name}{suffix}"
    tmp.replace(final)
    return final


def tensorrt_qdq_problems(path: Path) -> list[str]:
    """What TensorRT's explicit quantization would refuse: Q/DQ pairs that are not int8 or whose
    zero point is not 0 (TensorRT supports symmetric int8 only)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {t.name: t for t in model.graph.initializer}
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero_point = initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero_point is None:
            problems.append(f"{node.name}: no zero point (defaults to uint8)")
        elif zero_point.data_type != onnx.TensorProto.INT8:
            problems.append(f"{node.name}: {onnx.TensorProto.DataType.Name(zero_point.data_type)} zero point")
        elif np.any(numpy_helper.to_array(zero_point) != 0):
            problems.append(f"{node.name}: non-zero zero point")
    return problems


def _file_intact(models_dir: Path, entry: dict, file_key: str, sha_key: str) -> bool:
    """The manifest entry names a file that exists with the recorded sha256."""
    name = entry.get(file_key)
    return bool(name) and (models_dir / name).is_file() and _sha256_file(models_dir / name) == entry.get(sha_key)


def quantize_models(models_dir: str | Path, calibration_dir: str | Path, options: QuantizeOptions = QuantizeOptions(),
                    on_progress: Callable[[str, int, int], None] = lambda name, done, total: None) -> dict:
    """Build (or reuse) the Q/DQ model of every chosen graph; returns the manifest's int8 section."""
    import onnxruntime

    from ..model_store import MANIFEST_NAME

    models_dir = Path(models_dir).expanduser()
    manifest_path = models_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise QuantizeError(f"{manifest_path}: no model manifest; export the models first")
    manifest = json.loads(manifest_path.read_text())
    try:
        calibration = CalibrationSet.open(calibration_dir)
    except (ValueError, OSError) as err:
        raise QuantizeError(str(err)) from None
    total = len(calibration.items) if options.limit is None else min(options.limit, len(calibration.items))
    if total <= HOLDOUT:
        raise QuantizeError(f"{calibration_dir}: {total} calibration photo(s); need more than {HOLDOUT} "
                            f"(the last {HOLDOUT} validate)")
    exported = manifest.get("graphs", {})
    chosen = [g for g in (options.graphs or GLOBAL_GRAPHS) if g in exported]
    unknown = [g for g in (options.graphs or ()) if g not in GLOBAL_GRAPHS]
    if unknown:
        raise QuantizeError(f"cannot quantize {', '.join(unknown)} (choose among {', '.join(GLOBAL_GRAPHS)})")
    if not chosen:
        raise QuantizeError(f"{models_dir}: none of the global graphs is exported")
    fingerprint = calibration.fingerprint()
    section = manifest.get("int8", {})
    previous = section.get("graphs", {})
    (models_dir / CACHE_DIR).mkdir(parents=True, exist_ok=True)
    versions = {"onnxruntime": onnxruntime.__version__, "quantizer": QUANTIZER_VERSION}

    plans = {}
    for name in chosen:
        fp32_path = models_dir / exported[name]["file"]
        source_sha = exported[name].get("sha256") or _sha256_file(fp32_path)
        fp32_nodes = dict(boundary_convs(fp32_path, "Pad" in options.op_types)) if options.keep_boundary_fp32 else {}
        for node in options.extra_fp32_nodes.get(name, ()):
            fp32_nodes[node] = "kept in fp32 by request"
        cal_key = _key({"graph": source_sha, "calibration": fingerprint, **options.calibration_key(), **versions})
        build_key = _key({"calibration_key": cal_key, "fp32_nodes": sorted(fp32_nodes), "format": "QDQ",
                          "weights": "int8 per-channel symmetric", "activations": "uint8",
                          "flavours": sorted(FLAVOURS)})
        cache_path = models_dir / CACHE_DIR / f"{name}.{cal_key[:16]}.json"
        entry = previous.get(name, {})
        current = (not options.force and entry.get("build_key") == build_key
                   and _file_intact(models_dir, entry, "file", "sha256")
                   and _file_intact(models_dir, entry, "tensorrt_file", "tensorrt_sha256"))
        plans[name] = {"fp32_path": fp32_path, "source_sha": source_sha, "fp32_nodes": fp32_nodes,
                       "cal_key": cal_key, "build_key": build_key, "cache_path": cache_path, "current": current}

    # Feeds are needed for calibration (cache misses) and for validation of rebuilt graphs;
    # with every range cached only the validation items are run.
    needs_build = [n for n, p in plans.items() if not p["current"]]
    all_cached = all(plans[n]["cache_path"].is_file() for n in needs_build)
    indices = list(range(total - HOLDOUT, total)) if all_cached else list(range(total))
    feeds: dict[str, list[tuple[int, dict]]] = {}
    if needs_build:
        step = "running the fp32 pipeline on the calibration set"
        on_progress(step, 0, len(indices))
        feeds = collect_feeds(models_dir, calibration, set(needs_build), indices,
                              on_item=lambda i: on_progress(step, i + 1, len(indices)))
    graphs_section = dict(previous)
    for done, name in enumerate(chosen):
        plan = plans[name]
        on_progress(f"quantizing {name}", done, len(chosen))
        if plan["current"]:
            graphs_section[name] = {**previous[name], "reused": True, **_runtime_precision(name, options)}
            continue
        recorded = feeds.get(name, [])
        if {item for item, _ in recorded} != set(indices):
            raise QuantizeError(f"{name}: the pipeline did not run it on every calibration photo")
        calibrate = [feed for item, feed in recorded if item < total - HOLDOUT]
        holdout = [feed for item, feed in recorded if item >= total - HOLDOUT]
        graph_feeds = calibrate + holdout
        started = time.perf_counter()
        cached = plan["cache_path"].is_file()
        qdq_path = quantize_graph(name, plan["fp32_path"], models_dir / INT8_DIR, plan["cache_path"],
                                  None if cached else calibrate, options, plan["fp32_nodes"])
        trt_path = quantize_graph(name, plan["fp32_path"], models_dir / INT8_DIR, plan["cache_path"], None,
                                  options, plan["fp32_nodes"], flavour="tensorrt")  # ranges from the cache
        problems = tensorrt_qdq_problems(trt_path)
        if problems:
            raise QuantizeError(f"{trt_path}: not TensorRT-compatible Q/DQ: {'; '.join(problems[:3])}")
        macs = conv_macs(plan["fp32_path"], _feed_shapes(graph_feeds[0]))
        int8_macs = sum(v["macs"] for k, v in macs.items() if v["op"] == "Conv" and k not in plan["fp32_nodes"])
        all_macs = sum(v["macs"] for v in macs.values()) or 1
        fused = optimized_op_counts(qdq_path)
        graphs_section[name] = {
            "file": f"{INT8_DIR}/{name}.qdq.onnx",
            "sha256": _sha256_file(qdq_path),
            "source_file": exported[name]["file"],
            "source_sha256": plan["source_sha"],
            **_runtime_precision(name, options),
            "build_key": plan["build_key"],
            "calibration_cache": str(plan["cache_path"].relative_to(models_dir)),
            "calibration_cache_hit": cached,
            "quantized_op_types": list(options.op_types),
            "kept_fp32": {
                "op_types": sorted(set(op_counts(plan["fp32_path"])) - set(options.op_types)),
                "nodes": plan["fp32_nodes"],
                "runtime": "attention (numpy, between the graphs)" if MODE_OF_GRAPH[name] in ("scratch", "hr")
                else None,
            },
            "conv_total": sum(1 for v in macs.values()),
            "conv_int8": sum(1 for k, v in macs.items() if v["op"] == "Conv" and k not in plan["fp32_nodes"]),
            "int8_mac_fraction": round(int8_macs / all_macs, 4),
            "cpu_kernels_after_fusion": {k: v for k, v in fused.items()
                                         if k in ("QLinearConv", "Conv", "ConvTranspose", "QuantizeLinear",
                                                  "DequantizeLinear", "Transpose")},
            "validation": validate(plan["fp32_path"], qdq_path, holdout),
            "tensorrt_file": f"{INT8_DIR}/{trt_path.name}",
            "tensorrt_sha256": _sha256_file(trt_path),
            "tensorrt_validation": validate(plan["fp32_path"], trt_path, holdout),
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        # what engines/builder.py reads: TensorRT takes symmetric int8 Q/DQ only
        manifest["graphs"][name]["qdq_file"] = graphs_section[name]["tensorrt_file"]
    section = {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ (QuantizeLinear/DequantizeLinear pairs, opset %s)" % manifest.get("opset", "?"),
        "weights": "int8, per output channel, symmetric (zero point 0)",
        "activations": "uint8, per tensor, asymmetric (onnxruntime file); int8, per tensor, symmetric "
                       "(tensorrt_file, same calibrated ranges)",
        "calibration": {"set": str(Path(calibration_dir).resolve()), "fingerprint": fingerprint,
                        "items": total - HOLDOUT, "validation_items": HOLDOUT, "method": options.method,
                        "percentile": options.percentile if options.method == "percentile" else None,
                        "generator_version": calibration.manifest.get("generator_version")},
        "versions": versions,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "graphs": graphs_section,
    }
    manifest["int8"] = section
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(manifest_path)
    on_progress("done", len(chosen), len(chosen))
    return section


def _runtime_precision(name: str, options: QuantizeOptions) -> dict:
    """What the onnxruntime backend runs for this graph under --precision int8."""
    if name in options.fp32_graphs:
        return {"precision": "fp32", "precision_reason": "INT8 model built but not used by the runtime: its "
                "error is amplified by the mapping network downstream (benchmarks/README.md)"}
    return {"precision": "int8", "precision_reason": None}


def options_dict(options: QuantizeOptions) -> dict:
    return asdict(options)
