"""Static facts about an ONNX graph at a given input size: multiply-accumulates per Conv.

Used to say what fraction of the work a Q/DQ model runs in INT8 and, by the benchmarks,
to turn a measured time into achieved convolution throughput (FLOP/s = 2 x MAC/s).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CONV_TYPES = ("Conv", "ConvTranspose", "QLinearConv")


def _concrete(model, shapes: dict[str, tuple[int, ...]]):
    import onnx

    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[value.name]):
                dim.ClearField("dim_param")
                dim.dim_value = int(size)
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def conv_macs(model_path: str | Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, dict]:
    """{conv node name: {"op", "macs", "in_channels", "out_channels", "kernel", "output"}} for
    every Conv/ConvTranspose at the given input shapes (float graph, not Q/DQ)."""
    import onnx
    from onnx import numpy_helper

    model = _concrete(onnx.load(str(model_path)), shapes)
    known = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
             for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    result = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        w = weights.get(node.input[1])
        out = known.get(node.output[0])
        inp = known.get(node.input[0])
        if w is None or not out or not inp or 0 in out or 0 in inp:
            raise ValueError(f"{model_path}: cannot size {node.op_type} {node.name or index}")
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        kernel = int(np.prod(w[2:]))
        if node.op_type == "Conv":  # W: (Cout, Cin/group, k...), work per output position
            macs = int(np.prod(out[2:])) * out[1] * w[1] * kernel
        else:  # ConvTranspose W: (Cin, Cout/group, k...), work per input position
            macs = int(np.prod(inp[2:])) * w[0] * w[1] * kernel
        result[node.name or f"{node.op_type}_{index}"] = {
            "op": node.op_type, "macs": macs, "in_channels": inp[1], "out_channels": out[1],
            "kernel": list(w[2:]), "group": group, "output": node.output[0]}
    return result


def op_counts(model_path: str | Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def optimized_op_counts(model_path: str | Path, threads: int = 1) -> dict[str, int]:
    """Node types after onnxruntime's CPU graph optimisations: shows whether Q/DQ pairs were
    fused into QLinearConv (integer kernels) or left as DequantizeLinear -> float Conv."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="trt-restore-opt-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "weights.bin")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        return op_counts(options.optimized_model_filepath)
