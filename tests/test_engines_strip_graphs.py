"""The graphs the tiled executor runs on the device (engines/strip_graphs.py), computed by
onnxruntime against numpy: the wrapped layer's normalisation prologue and moment outputs, the
pointwise op graphs, and the fp16 copy's moments (kept in fp32: they overflow fp16)."""
from __future__ import annotations

import numpy as np
import pytest

from trt_restore.engines.strip_graphs import NO_FLOOR, op_model, wrap_layer

C_IN, C_OUT = 4, 6


def _conv_model(weight: np.ndarray):
    """A per-layer graph like the export's: x -> 3x3 conv padding only the width -> y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 0, 1], kernel_shape=[3, 3])], "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, "rows", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C_OUT, "rows_out", "width"])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _conv_numpy(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    rows, width = x.shape[1] - 2, x.shape[2]
    out = np.zeros((weight.shape[0], rows, width), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("oc,crw->orw", weight[:, :, i, j], padded[:, i:i + rows, j:j + width])
    return out


def _feed(rng, rows: int, width: int, relu: bool, scale_up: float = 1.0) -> dict:
    inside = np.ones(rows, np.float32)
    inside[:2] = 0.0  # two zero-padding rows at the top
    keep = np.ones(rows - 2, np.float32)
    keep[-1] = 0.0  # an output row that is not this strip's (a transposed conv's extra row)
    return {"x": (rng.standard_normal((1, C_IN, rows, width)) * scale_up).astype(np.float32),
            "mean": rng.standard_normal((1, C_IN, 1, 1)).astype(np.float32),
            "scale": rng.uniform(0.5, 2, (1, C_IN, 1, 1)).astype(np.float32),
            "floor": np.full((1, C_IN, 1, 1), 0.0 if relu else NO_FLOOR, np.float32),
            "rows": inside[None, None, :, None], "keep": keep[None, None, :, None]}


@pytest.mark.parametrize("relu", [True, False])
def test_wrapped_layer_normalises_its_input_and_returns_the_strips_moments(relu):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((C_OUT, C_IN, 3, 3)).astype(np.float32)
    feed = _feed(rng, 9, 11, relu)
    y, ymean, ym2 = _session(wrap_layer(_conv_model(weight))).run(["y", "ymean", "ym2"], feed)
    effective = (feed["x"][0] - feed["mean"][0]) * feed["scale"][0]
    if relu:
        effective = np.maximum(effective, 0)
    effective = effective * feed["rows"][0]  # zero-padding rows are zeros after normalisation
    want = _conv_numpy(effective, weight)
    np.testing.assert_allclose(y[0], want, rtol=1e-4, atol=1e-4)
    kept = want[:, feed["keep"][0, 0, :, 0] > 0].reshape(C_OUT, -1)
    np.testing.assert_allclose(ymean.reshape(-1), kept.mean(axis=1), rtol=1e-4, atol=1e-5)
    m2 = ((kept - kept.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    np.testing.assert_allclose(ym2.reshape(-1), m2, rtol=1e-4)


@pytest.mark.parametrize("kind", ["copy", "add", "blend"])
def test_op_graphs_apply_each_operands_normalisation(kind):
    rng = np.random.default_rng(1)
    shapes = {"copy": [8], "add": [8, 8], "blend": [1, 8, 8]}[kind]  # blend's valid map: one channel
    feed, effective = {}, []
    for name, channels in zip("abc", shapes):
        raw = rng.standard_normal((1, channels, 5, 7)).astype(np.float32)
        mean = rng.standard_normal((1, channels, 1, 1)).astype(np.float32)
        scale = rng.uniform(0.5, 2, (1, channels, 1, 1)).astype(np.float32)
        relu = name != "a"
        floor = np.full((1, channels, 1, 1), 0.0 if relu else NO_FLOOR, np.float32)
        feed.update({name: raw, f"{name}_mean": mean, f"{name}_scale": scale, f"{name}_floor": floor})
        value = (raw - mean) * scale
        effective.append(np.maximum(value, 0) if relu else value)
    (out,) = _session(op_model(kind)).run(["out"], feed)
    want = {"copy": lambda a: a, "add": lambda a, b: a + b, "blend": lambda v, k, o: v * k + (1 - v) * o}[kind]
    np.testing.assert_allclose(out, want(*effective), rtol=1e-5, atol=1e-5)


def test_fp16_copy_keeps_the_moments_in_fp32(tmp_path):
    """A strip of large activations: the sum of squares of its deviations exceeds fp16's range
    (65504). With the statistics kept in fp32 (what build-engines converts with) the moments
    stay finite and close to the fp32 graph's; converted like any graph they would be fp16."""
    import onnx

    from trt_restore.engines.fp16_onnx import convert_to_fp16
    from trt_restore.engines.strip_graphs import FP32_TAIL

    rng = np.random.default_rng(2)
    weight = rng.standard_normal((C_OUT, C_IN, 3, 3)).astype(np.float32)
    feed = _feed(rng, 18, 64, relu=False, scale_up=8.0)
    wrapped = wrap_layer(_conv_model(weight))
    _, want_m2 = _session(wrapped).run(["ymean", "ym2"], feed)
    assert want_m2.max() > 65504 * 4
    kept = convert_to_fp16(wrapped, fp32_tail=FP32_TAIL)
    onnx.checker.check_model(kept, full_check=True)
    _, ym2 = _session(kept).run(["ymean", "ym2"], feed)
    np.testing.assert_allclose(ym2, want_m2, rtol=2e-2)
    # onnxruntime's CPU kernels compute fp16 ops in fp32, so the overflow itself shows only on a
    # GPU: check the element types instead (converted like any graph, the squares are fp16)
    assert _elem_type(kept, "stat_sq") == onnx.TensorProto.FLOAT
    assert _elem_type(convert_to_fp16(wrapped), "stat_sq") == onnx.TensorProto.FLOAT16


def _elem_type(model, tensor: str) -> int:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    (info,) = [v for v in inferred.graph.value_info if v.name == tensor]
    return info.type.tensor_type.elem_type
