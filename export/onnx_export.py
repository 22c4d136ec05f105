"""PyTorch -> ONNX: export each graph segment, check, simplify, validate, write a manifest.

Graphs have dynamic batch/height/width (faces: dynamic batch, fixed crop size), opset 17,
pass `onnx.checker`, are simplified with onnxslim, and are compared with the PyTorch
module on two different shapes through onnxruntime before they are accepted.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .checkpoints import load_network
from .graphs import GRAPHS, GraphSpec, example_inputs
from .layer_export import export_layers
from .manifests import checkpoint_path

OPSET = 17
MANIFEST_NAME = "models.json"
FORMAT_VERSION = 1


class ExportError(RuntimeError):
    pass


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def validation_sizes(spec: GraphSpec) -> list[tuple[int, int]]:
    """Two different image sizes (non-square, different aspect) honouring the graph's multiple."""
    if spec.multiple >= 256:  # face crops have a fixed size
        return [(spec.multiple, spec.multiple)]
    m = max(spec.multiple, 16)
    return [(4 * m if m < 32 else 128, 6 * m if m < 32 else 160), (6 * m if m < 32 else 192, 5 * m if m < 32 else 128)]


def _dynamic_axes(spec: GraphSpec) -> dict:
    spatial = spec.multiple < 256
    axes = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
    names = list(spec.inputs) + list(spec.outputs)
    return {name: dict(axes) for name in names}


def _simplify(path: Path) -> None:
    import onnx
    import onnxslim

    model = onnx.load(str(path))
    slim = onnxslim.slim(model)
    onnx.save(slim, str(path))


def _compare(spec: GraphSpec, module, path: Path, sizes: Iterable[tuple[int, int]]) -> list[dict]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    report = []
    for height, width in sizes:
        inputs = example_inputs(spec, height, width, seed=height * 7 + width)
        with torch.inference_mode():
            expected = module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(list(spec.outputs), {k: v.numpy() for k, v in inputs.items()})
        worst = 0.0
        for name, want, have in zip(spec.outputs, expected, got):
            want = want.numpy()
            if want.shape != have.shape:
                raise ExportError(f"{path.name}: output {name} shape {have.shape} != PyTorch {want.shape}")
            scale = max(1.0, float(np.max(np.abs(want))))
            err = float(np.max(np.abs(want - have))) / scale
            worst = max(worst, err)
        if not worst <= 1e-3:
            raise ExportError(f"{path.name}: onnxruntime differs from PyTorch by {worst:.3g} (relative) at {height}x{width}")
        report.append({"image_size": [height, width], "max_rel_error": worst})
    return report


def export_graph(spec: GraphSpec, network, out_dir: Path) -> dict:
    """Export one graph; returns its manifest entry."""
    import onnx

    module = spec.wrap(network).eval()
    path = out_dir / f"{spec.name}.onnx"
    tmp = path.with_suffix(".onnx.tmp")
    sizes = validation_sizes(spec)
    inputs = example_inputs(spec, *sizes[0])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's constant-folding chatter
        torch.onnx.export(module, tuple(inputs.values()), str(tmp), input_names=list(spec.inputs),
                          output_names=list(spec.outputs), dynamic_axes=_dynamic_axes(spec),
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(tmp))
    _simplify(tmp)
    onnx.checker.check_model(str(tmp))
    validation = _compare(spec, module, tmp, sizes)
    tmp.replace(path)
    model = onnx.load(str(path), load_external_data=False)

    def describe(values):
        return [{"name": v.name, "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]}
                for v in values]

    return {"file": path.name, "tag": spec.tag, "multiple": spec.multiple,
            "inputs": describe(model.graph.input), "outputs": describe(model.graph.output),
            "validation": validation, "sha256": sha256_of(path)}


@dataclass
class ExportPlan:
    weights_root: Path
    out_dir: Path
    graphs: tuple[GraphSpec, ...] = GRAPHS
    tiled_layers: bool = True  # per-layer graphs for exact tiled execution (runtime/tiling)


def export_all(plan: ExportPlan, on_progress: Callable[[str], None] = lambda name: None) -> dict:
    """Export every graph of the plan (one network load per checkpoint) and write the manifest."""
    import onnx
    import onnxruntime

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = plan.out_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update({
        "format_version": FORMAT_VERSION,
        "opset": OPSET,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "python": platform.python_version()},
    })
    graphs = manifest.setdefault("graphs", {})
    checkpoints = manifest.setdefault("checkpoints", {})
    by_tag: dict[str, list[GraphSpec]] = {}
    for spec in plan.graphs:
        by_tag.setdefault(spec.tag, []).append(spec)
    for tag, specs in by_tag.items():
        network = load_network(plan.weights_root, tag)
        source = checkpoint_path(plan.weights_root, tag)
        checkpoints[tag] = {"file": str(source), "sha256": sha256_of(source)}
        for spec in specs:
            on_progress(spec.name)
            graphs[spec.name] = export_graph(spec, network, plan.out_dir)
            graphs[spec.name]["checkpoint_sha256"] = checkpoints[tag]["sha256"]
        if plan.tiled_layers:
            on_progress(f"{tag} layers")
            manifest.setdefault("layers", {}).update(export_layers({tag: network}, plan.out_dir))
        del network
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(manifest_path)
    return manifest
