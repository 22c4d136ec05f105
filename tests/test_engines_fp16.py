"""fp32 -> fp16 ONNX conversion for strongly typed TensorRT 11 builds."""
from __future__ import annotations

import numpy as np
import pytest

from engines_support import tiny_onnx

onnx = pytest.importorskip("onnx")


def test_conversion_keeps_fp32_io_and_instance_norm(tmp_path):
    from trt_restore.engines.fp16_onnx import convert_file

    source = tiny_onnx(tmp_path / "m.onnx", "latent", "mapped", 16)
    target = convert_file(source, tmp_path / "m.fp16.onnx")
    model = onnx.load(str(target))
    onnx.checker.check_model(model, full_check=True)
    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == F32
    assert model.graph.output[0].type.tensor_type.elem_type == F32
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types["w"] == F16 and types["half"] == F16
    assert types["scale"] == F32 and types["bias"] == F32  # InstanceNormalization stays fp32
    assert types["scales"] == F32  # Resize scales must be fp32
    norm = next(n for n in model.graph.node if n.op_type == "InstanceNormalization")
    producers = {o: n for n in model.graph.node for o in n.output}
    assert producers[norm.input[0]].op_type == "Cast"

    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, 16, 8, 12)).astype(np.float32)
    want = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"latent": x})[0]
    try:
        got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"latent": x})[0]
    except Exception as err:  # noqa: BLE001 - onnxruntime builds without some fp16 CPU kernels
        pytest.skip(f"onnxruntime cannot run the fp16 graph on this CPU: {err}")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=3e-2 * float(np.abs(want).max()))


def test_graph_outputs_consumed_inside_the_graph(tmp_path):
    """mapping_scratch_head returns x and also feeds x to theta/phi/g."""
    from onnx import TensorProto, helper, numpy_helper

    from trt_restore.engines.fp16_onnx import convert_to_fp16

    w = numpy_helper.from_array(np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1), "w")
    nodes = [helper.make_node("Relu", ["latent"], ["x"]), helper.make_node("Conv", ["x", "w"], ["theta"])]
    dims = [1, 4, 2, 2]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("latent", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims),
                               helper.make_tensor_value_info("theta", TensorProto.FLOAT, dims)], [w])
    model = convert_to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.checker.check_model(model, full_check=True)
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"latent": x})
    np.testing.assert_allclose(out[0], np.maximum(x, 0), atol=1e-3)
    np.testing.assert_allclose(out[1], np.maximum(x, 0), atol=1e-3)


@pytest.mark.slow
def test_conversion_of_every_exported_graph(exported_models, tmp_path):
    import json

    from trt_restore.engines.fp16_onnx import convert_file

    manifest = json.loads((exported_models / "models.json").read_text())
    for name, entry in manifest["graphs"].items():
        if "." in name:  # per-layer graphs of the tiled executor are not built into engines
            continue
        convert_file(exported_models / entry["file"], tmp_path / f"{name}.fp16.onnx")
