"""Small, honest TFLite model edits for the layout tests, made with the flatbuffer schema LiteRT ships.

`ai_edge_litert.schema_py_generated` is the TFLite schema compiled with the
flatbuffers object API: a model unpacks into plain objects (subgraphs,
tensors, operators, buffers), is edited there and packs back into a valid
file — no TensorFlow, no byte offsets guessed. The weights and ops are never
touched; only the graph's input/output lists and tensor names change.
"""

from __future__ import annotations

from typing import Any

# The order and names a TF2 Object Detection API export gives the post-process op's outputs:
# graph outputs are listed scores, boxes, count, classes, named StatefulPartitionedCall:1, :3, :0, :2
# (op outputs in TFLite order are boxes, classes, scores, count).
TF2_ORDER = [(2, b"StatefulPartitionedCall:1"), (0, b"StatefulPartitionedCall:3"),
             (3, b"StatefulPartitionedCall:0"), (1, b"StatefulPartitionedCall:2")]


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _unpack(data: bytes) -> Any:
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def _pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tf2_ordered(ssd_postprocess_model: bytes) -> bytes:
    """A TF1 SSD model (outputs boxes, classes, scores, count) with its graph outputs listed and named the
    way TF2 exports them: the same network, so it must decode to the same detections."""
    model = _unpack(ssd_postprocess_model)
    graph = model.subgraphs[0]
    outputs = list(graph.outputs)
    if len(outputs) != 4:
        raise ValueError(f"expected the 4 outputs of the SSD post-process op, got {len(outputs)}")
    graph.outputs = [outputs[position] for position, _ in TF2_ORDER]
    for (position, name) in TF2_ORDER:
        graph.tensors[outputs[position]].name = name
    return _pack(model)


def with_state_input() -> bytes:
    """A recurrent-style classifier: logits = reshape(image) + state, with `state` a second graph input."""
    schema = _schema()

    def tensor(name: bytes, shape: list[int]) -> Any:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, schema.TensorType.FLOAT32, 0
        return t

    def opcode(builtin: int) -> Any:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        code.version = 1
        return code

    reshape = schema.OperatorT()
    reshape.opcodeIndex, reshape.inputs, reshape.outputs = 0, [0], [2]
    reshape.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    reshape.builtinOptions = schema.ReshapeOptionsT()
    reshape.builtinOptions.newShape = [1, 192]
    add = schema.OperatorT()
    add.opcodeIndex, add.inputs, add.outputs = 1, [2, 1], [3]
    add.builtinOptionsType, add.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    graph = schema.SubGraphT()
    graph.tensors = [tensor(b"image", [1, 8, 8, 3]), tensor(b"state", [1, 192]), tensor(b"flat", [1, 192]),
                     tensor(b"logits", [1, 192])]
    graph.inputs, graph.outputs, graph.operators = [0, 1], [3], [reshape, add]
    model = schema.ModelT()
    model.version, model.buffers = 3, [schema.BufferT()]
    model.operatorCodes = [opcode(schema.BuiltinOperator.RESHAPE), opcode(schema.BuiltinOperator.ADD)]
    model.subgraphs = [graph]
    return _pack(model)


def with_edgetpu_op(cpu_model: bytes) -> bytes:
    """A CPU model that also lists the `edgetpu-custom-op` among its operator codes, used by no operator.

    A stand-in for an edgetpu_compiler build where none can be made (the compiler is x86-only and not on
    PyPI): it carries what identifies an Edge TPU build — the custom op's code — while its graph stays
    the CPU one, so it still runs, e.g. through the stand-in delegate.
    """
    schema = _schema()
    model = _unpack(cpu_model)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = b"edgetpu-custom-op"
    code.version = 1
    model.operatorCodes.append(code)
    return _pack(model)
