"""The graphs the tiled executor runs on the device: per-layer graphs wrapped with the pending
normalisation and the strip's statistics, and pointwise ops on strips.

On the host the executor normalises a strip before a layer, accumulates InstanceNorm
statistics after it and adds/blends/copies maps in numpy. Under TensorRT those steps run in
the engines instead, so a strip never leaves the device between layers:

- a wrapped layer graph takes the *raw* strip `x` and per-channel `mean`, `scale`, `floor`
  (1, C, 1, 1) and a row mask `rows` (1, 1, R, 1): it feeds max((x - mean) * scale, floor) *
  rows to the layer (floor 0 = ReLU, -FLT_MAX = none; `rows` zeroes zero-padding rows), and
  besides `y` emits the strip's per-channel mean and M2 (`ymean`, `ym2`, (1, C, 1, 1)) over
  the output rows marked by `keep` (1, 1, R_out, 1): the transposed convs' extra rows are not
  counted. Only those 2 x C numbers per strip go to the host (Chan's update, float64);
- op graphs `strip/copy`, `strip/add`, `strip/blend` apply the same (mean, scale, floor) to each
  operand and copy, add, or blend (v * k + (1 - v) * o) them.

The statistics nodes (names starting "stat_") read only `y` and `keep` and are kept wholly
in fp32 by the fp16 converter (`FP32_TAIL`): a strip's sums overflow fp16.
"""
from __future__ import annotations

import hashlib

STRIP_GRAPH_VERSION = "1"  # part of every wrapped graph's engine key: bump when the wrapping changes
NO_FLOOR = -3.4028234e38  # floor of operands without ReLU (max(x, -FLT_MAX) == x)
OPS = {"copy": 1, "add": 2, "blend": 3}  # op graph -> operands
OP_PREFIX = "strip/"
FP32_TAIL = "stat_"  # node-name prefix of the statistics, kept in fp32 by engines/fp16_onnx.py
NORM_INPUTS = ("mean", "scale", "floor")


def op_graph_name(kind: str) -> str:
    return OP_PREFIX + kind


def wrapped_digest(layer_sha256: str) -> str:
    """Engine-key hash of a wrapped layer graph: its layer file's and the wrapping's version."""
    return hashlib.sha256(f"{layer_sha256}:strip-graph-{STRIP_GRAPH_VERSION}".encode()).hexdigest()


def op_digest(kind: str) -> str:
    return hashlib.sha256(f"{op_graph_name(kind)}:strip-graph-{STRIP_GRAPH_VERSION}".encode()).hexdigest()


def _operand_nodes(helper, prefix: str, raw: str, out: str, rows: str | None) -> list:
    """Nodes computing out = max((raw - mean) * scale, floor) [* rows]."""
    nodes = [helper.make_node("Sub", [raw, f"{prefix}mean"], [f"{prefix}_centred"]),
             helper.make_node("Mul", [f"{prefix}_centred", f"{prefix}scale"], [f"{prefix}_scaled"])]
    if rows is None:
        nodes.append(helper.make_node("Max", [f"{prefix}_scaled", f"{prefix}floor"], [out]))
    else:
        nodes += [helper.make_node("Max", [f"{prefix}_scaled", f"{prefix}floor"], [f"{prefix}_floored"]),
                  helper.make_node("Mul", [f"{prefix}_floored", rows], [out])]
    return nodes


def _norm_inputs(helper, TensorProto, prefix: str, channels) -> list:
    return [helper.make_tensor_value_info(f"{prefix}{name}", TensorProto.FLOAT, [1, channels, 1, 1])
            for name in NORM_INPUTS]


def _statistics_nodes(helper, numpy_helper, np) -> tuple[list, list]:
    """(nodes, initializers) computing ymean / ym2 of `y` over the rows marked by `keep`."""
    inits = [numpy_helper.from_array(np.array([0, 2, 3], np.int64), "stat_axes"),
             numpy_helper.from_array(np.array([3], np.int64), "stat_width_index")]
    steps = [
        ("Mul", ["y", "keep"], "stat_kept", {}),
        ("ReduceSum", ["stat_kept", "stat_axes"], "stat_sum", {"keepdims": 1}),
        ("ReduceSum", ["keep"], "stat_rows", {"keepdims": 0}),
        ("Shape", ["y"], "stat_shape", {}),
        ("Gather", ["stat_shape", "stat_width_index"], "stat_width_i", {}),
        ("Cast", ["stat_width_i"], "stat_width", {"to": 1}),
        ("Mul", ["stat_rows", "stat_width"], "stat_count", {}),
        ("Div", ["stat_sum", "stat_count"], "ymean", {}),
        ("Sub", ["y", "ymean"], "stat_dev", {}),
        ("Mul", ["stat_dev", "keep"], "stat_dev_kept", {}),
        ("Mul", ["stat_dev_kept", "stat_dev_kept"], "stat_sq", {}),
        ("ReduceSum", ["stat_sq", "stat_axes"], "ym2", {"keepdims": 1}),
    ]
    nodes = [helper.make_node(op, inputs, [output], name=f"{FP32_TAIL}{output}", **attrs)
             for op, inputs, output, attrs in steps]
    return nodes, inits


def wrap_layer(model):
    """A per-layer graph (input "x", output "y") -> its strip graph (see the module docstring)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    (x,) = [i for i in graph.input if i.name == "x"]
    (y,) = [o for o in graph.output if o.name == "y"]
    channels = x.type.tensor_type.shape.dim[1].dim_value or "channels"
    out_channels = y.type.tensor_type.shape.dim[1].dim_value or "out_channels"
    for node in graph.node:
        node.input[:] = ["x_effective" if name == "x" else name for name in node.input]
    prologue = _operand_nodes(helper, "", "x", "x_effective", "rows")
    statistics, inits = _statistics_nodes(helper, numpy_helper, np)
    nodes = prologue + list(graph.node) + statistics
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.input.extend(_norm_inputs(helper, TensorProto, "", channels))
    graph.input.extend([helper.make_tensor_value_info("rows", TensorProto.FLOAT, [1, 1, "rows", 1]),
                        helper.make_tensor_value_info("keep", TensorProto.FLOAT, [1, 1, "rows_out", 1])])
    graph.output.extend([helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, out_channels, 1, 1])
                         for name in ("ymean", "ym2")])
    onnx.checker.check_model(model)
    return model


def op_model(kind: str):
    """The pointwise op graph `strip/<kind>`: operands a, b, c (1, C, rows, W), each with its
    a_mean / a_scale / a_floor; output `out`."""
    import onnx
    from onnx import TensorProto, helper

    names = "abc"[:OPS[kind]]
    inputs, nodes = [], []
    for name in names:  # channels per operand: blend's `valid` has one, broadcast over the others'
        dims = [1, f"{name}_channels", "rows", "width"]
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
        inputs += _norm_inputs(helper, TensorProto, f"{name}_", f"{name}_channels")
        nodes += _operand_nodes(helper, f"{name}_", name, f"{name}_effective", None)
    if kind == "copy":
        nodes.append(helper.make_node("Identity", ["a_effective"], ["out"]))
    elif kind == "add":
        nodes.append(helper.make_node("Add", ["a_effective", "b_effective"], ["out"]))
    else:  # blend: v * k + (1 - v) * o  ==  o + v * (k - o)
        nodes += [helper.make_node("Sub", ["b_effective", "c_effective"], ["blend_diff"]),
                  helper.make_node("Mul", ["a_effective", "blend_diff"], ["blend_part"]),
                  helper.make_node("Add", ["c_effective", "blend_part"], ["out"])]
    graph = helper.make_graph(nodes, f"strip_{kind}", inputs,
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, "channels", "rows", "width"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def write_wrapped_layer(source, target) -> None:
    """Wrap the per-layer graph file `source` into `target` (written atomically)."""
    import onnx

    _save(wrap_layer(onnx.load(str(source))), target)


def write_op_graph(kind: str, target) -> None:
    _save(op_model(kind), target)


def _save(model, target) -> None:
    import onnx
    from pathlib import Path

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(target)
