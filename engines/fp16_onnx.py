"""fp32 ONNX -> mixed fp16 ONNX for strongly typed TensorRT builds (TensorRT 11 has no FP16 flag).

The converted graph keeps fp32 inputs and outputs (a Cast after each input, before each
output), stores float weights and constants in fp16, and keeps the ops of `keep_fp32`
(InstanceNormalization by default: its statistics over a whole photo are where fp16 loses
most) in fp32 with Casts around them. Inputs that ONNX requires to be fp32 (Resize roi/scales)
stay fp32. The result passes `onnx.checker.check_model(full_check=True)`.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_KEEP_FP32 = ("InstanceNormalization",)
# (op type, input index) that must stay float32 whatever the data type
_FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def convert_to_fp16(model, keep_fp32: tuple[str, ...] = DEFAULT_KEEP_FP32, fp32_tail: str | None = None):
    """Return a converted copy of an onnx.ModelProto. `fp32_tail`: a node-name prefix of a
    tail of the graph kept wholly in fp32 (it reads graph inputs and outputs only, in fp32,
    and writes graph outputs): the strip graphs' statistics, whose sums overflow fp16."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16

    # Which tensor names feed a position that must stay fp32 (or a kept-fp32 op's parameters).
    fp32_names: set[str] = set()
    for node in graph.node:
        for index, name in enumerate(node.input):
            if (node.op_type, index) in _FP32_INPUTS or (node.op_type in keep_fp32 and index > 0):
                fp32_names.add(name)

    for init in graph.initializer:
        if init.data_type == FLOAT and init.name not in fp32_names:
            array = numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(array, init.name))

    def unique(base: str) -> str:
        existing = {n for node in graph.node for n in list(node.input) + list(node.output)}
        existing |= {i.name for i in graph.initializer} | {i.name for i in graph.input}
        name, k = base, 0
        while name in existing:
            k += 1
            name = f"{base}_{k}"
        return name

    new_nodes = []
    # graph inputs: fp32 outside, fp16 inside
    renamed: dict[str, str] = {}
    for value in graph.input:
        if value.type.tensor_type.elem_type == FLOAT and value.name not in {i.name for i in graph.initializer}:
            cast_out = unique(f"{value.name}__fp16")
            new_nodes.append(helper.make_node("Cast", [value.name], [cast_out], to=HALF, name=f"{value.name}__to_fp16"))
            renamed[value.name] = cast_out

    tail = [node for node in graph.node if fp32_tail and node.name.startswith(fp32_tail)]
    tail_outputs = {name for node in tail for name in node.output}
    fp32_names |= {name for node in tail for name in node.input}
    outputs = {v.name for v in graph.output if v.type.tensor_type.elem_type == FLOAT} - tail_outputs
    output_alias: dict[str, str] = {}
    for name in outputs:
        output_alias[name] = unique(f"{name}__fp16")

    for node in graph.node:
        if fp32_tail and node.name.startswith(fp32_tail):
            continue
        node_inputs = [renamed.get(name, output_alias.get(name, name)) for name in node.input]
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT and node.output[0] not in fp32_names:
                    array = numpy_helper.to_array(attr.t).astype(np.float16)
                    attr.t.CopyFrom(numpy_helper.from_array(array))
                elif attr.name == "value_float" and node.output[0] not in fp32_names:
                    value = attr.f
                    node.ClearField("attribute")
                    node.attribute.append(helper.make_attribute(
                        "value", numpy_helper.from_array(np.array(value, dtype=np.float16))))
                    break
        elif node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
        elif node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT and node.output[0] not in fp32_names:
                    attr.i = HALF
        node_outputs = [output_alias.get(name, name) for name in node.output]
        if node.op_type in keep_fp32:
            data_in = unique(f"{node.name or node.op_type}__in_fp32")
            new_nodes.append(helper.make_node("Cast", [node_inputs[0]], [data_in], to=FLOAT))
            node_inputs[0] = data_in
            fp32_outs = []
            for out in node_outputs:
                tmp = unique(f"{out}__fp32")
                fp32_outs.append(tmp)
            del node.input[:]
            node.input.extend(node_inputs)
            del node.output[:]
            node.output.extend(fp32_outs)
            new_nodes.append(node)
            for tmp, out in zip(fp32_outs, node_outputs):
                new_nodes.append(helper.make_node("Cast", [tmp], [out], to=HALF))
            continue
        del node.input[:]
        node.input.extend(node_inputs)
        del node.output[:]
        node.output.extend(node_outputs)
        new_nodes.append(node)

    for name, alias in output_alias.items():
        new_nodes.append(helper.make_node("Cast", [alias], [name], to=FLOAT, name=f"{name}__to_fp32"))
    new_nodes += tail  # after the output casts: it reads the fp32 graph inputs and outputs

    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    return model


def convert_file(source: str | Path, target: str | Path, keep_fp32: tuple[str, ...] = DEFAULT_KEEP_FP32,
                 fp32_tail: str | None = None) -> Path:
    import onnx

    model = convert_to_fp16(onnx.load(str(source)), keep_fp32, fp32_tail)
    onnx.checker.check_model(model, full_check=True)
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(target)
    return target
