"""Run an ONNX graph's bfloat16 / float16 arithmetic in float32 with the same rounding.

MedDINOv3 computes RoPE in bfloat16 (its checkpoints store bfloat16 periods, and the model was
trained with that rounding), so the graph PyTorch exports multiplies and adds bfloat16 tensors.
ONNX Runtime's CPU provider has no bfloat16 Mul or Add, and dropping the rounding would change
the function. Here every narrow tensor becomes a float32 tensor holding the same value: narrow
constants are widened (exactly), and each op that computes a narrow result runs in float32 and
is then cast to the narrow type and back. PyTorch's CPU kernels compute narrow elementwise ops
the same way (in float32, rounded once to nearest even, which ONNX Runtime's Cast does too), so
the rounding survives; ops that only move values (slice, concat, reshape, ...) need none.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

NARROW = (TensorProto.BFLOAT16, TensorProto.FLOAT16)
# Ops whose outputs are some of their input values, unchanged: no rounding to redo.
MOVES_VALUES = frozenset(
    {"Concat", "Expand", "Flatten", "Gather", "Identity", "Reshape", "Slice", "Split", "Squeeze", "Tile",
     "Transpose", "Unsqueeze"}
)


class NarrowFloatError(ValueError):
    """A narrow-float construct this rewrite does not know how to widen."""


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def _widened(tensor: onnx.TensorProto) -> onnx.TensorProto:
    if tensor.data_type not in NARROW:
        return tensor
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype("float32"), tensor.name)


def _widen_node(node: onnx.NodeProto) -> None:
    """The node computes in float32 now: a Cast to a narrow type casts to float32, and narrow
    tensor attributes (Constant, ConstantOfShape) hold float32."""
    for attribute in node.attribute:
        if node.op_type == "Cast" and attribute.name == "to" and attribute.i in NARROW:
            attribute.i = TensorProto.FLOAT
        elif attribute.type == onnx.AttributeProto.TENSOR:
            attribute.t.CopyFrom(_widened(attribute.t))


def _rounding(name: str, exact: str, narrow_type: int) -> list[onnx.NodeProto]:
    """`name` := `exact` (float32) rounded to `narrow_type`, held in float32."""
    narrow = f"{exact}_{TensorProto.DataType.Name(narrow_type).lower()}"
    return [
        helper.make_node("Cast", [exact], [narrow], to=narrow_type, name=f"narrow_round_{narrow}"),
        helper.make_node("Cast", [narrow], [name], to=TensorProto.FLOAT, name=f"narrow_widen_{narrow}"),
    ]


def widen_narrow_floats(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with narrow-float arithmetic emulated in float32 (see the module docstring)."""
    if model.functions:
        raise NarrowFloatError("graphs with local functions are not supported; export with the functions inlined")
    types = _value_types(model)
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        narrow_outputs = [(i, types[o]) for i, o in enumerate(node.output) if types.get(o) in NARROW]
        _widen_node(node)
        nodes.append(node)
        if node.op_type in MOVES_VALUES:
            continue
        for index, narrow_type in narrow_outputs:
            name = node.output[index]
            node.output[index] = f"{name}_exact"
            nodes.extend(_rounding(name, node.output[index], narrow_type))
    del graph.node[:]
    graph.node.extend(nodes)
    for initializer in graph.initializer:
        initializer.CopyFrom(_widened(initializer))
    narrow_infos = [v for v in graph.value_info if v.type.tensor_type.elem_type in NARROW]
    for info in narrow_infos:
        graph.value_info.remove(info)
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type in NARROW:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    _check_widened(model)
    return model


def _check_widened(model: onnx.ModelProto) -> None:
    """Only the rounding casts may produce narrow values now."""
    types = _value_types(model)
    for node in model.graph.node:
        if node.name.startswith("narrow_round_"):
            continue
        narrow = [o for o in node.output if types.get(o) in NARROW]
        if narrow:
            raise NarrowFloatError(f"{node.op_type} node {node.name!r} still computes {narrow} in a narrow type")
