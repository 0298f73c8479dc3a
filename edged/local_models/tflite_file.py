"""What a .tflite file says about itself without running it: the flatbuffer identifier, its inputs,
output count and custom ops.

An Edge TPU build cannot be opened without an Edge TPU (its `edgetpu-custom-op`
has no CPU kernel), so it is read as a flatbuffer with the TFLite schema that
LiteRT ships (`schema_py_generated`, plus the `flatbuffers` package it depends
on). Runtimes without the schema (tflite_runtime) get the byte checks only.
Output shapes are not compared: post-process outputs have no static shape in
the file, they are fixed when the interpreter prepares the graph.
"""

from __future__ import annotations

import importlib
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from edged.errors import DataError

IDENTIFIER = b"TFL3"  # the flatbuffer file identifier of every TFLite model (bytes 4..8)
SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated")


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str  # lower-case TFLite type name: "uint8", "float32", …

    def __str__(self) -> str:
        return f"{list(self.shape)} {self.dtype}"


@dataclass(frozen=True)
class GraphSummary:
    """The main subgraph's inputs and number of outputs, and the model's custom op names."""

    inputs: tuple[TensorSpec, ...]
    outputs: int
    custom_ops: frozenset[str]


def require_tflite(path: Path, what: str) -> None:
    """DataError (exit 65) unless the file carries the TFLite flatbuffer identifier."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or head[4:8] != IDENTIFIER:
        raise DataError(f"{what} {path} is not a TFLite model (no {IDENTIFIER.decode()} flatbuffer "
                        "identifier)")


def contains(path: Path, needle: bytes) -> bool:
    """A byte search of the whole file, for runtimes without the schema."""
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(needle) != -1


def summarize(path: Path) -> GraphSummary | None:
    """The file's graph summary; None when no TFLite schema module is installed. DataError for a file that is
    not a readable flatbuffer model."""
    schema = _schema()
    if schema is None:
        return None
    buffer = bytearray(path.read_bytes())
    try:
        model = schema.Model.GetRootAs(buffer, 0)
        graph = model.Subgraphs(0)
        types = {number: name.lower() for name, number in vars(schema.TensorType).items()
                 if not name.startswith("_")}
        inputs = []
        for position in range(graph.InputsLength()):
            tensor = graph.Tensors(graph.Inputs(position))
            shape = tensor.ShapeAsNumpy()
            inputs.append(TensorSpec(tuple(int(v) for v in shape) if not isinstance(shape, int) else (),
                                     types.get(tensor.Type(), str(tensor.Type()))))
        custom = frozenset(code.CustomCode().decode(errors="replace")
                           for code in (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
                           if code.CustomCode())
        return GraphSummary(tuple(inputs), graph.OutputsLength(), custom)
    except (IndexError, ValueError, TypeError, struct.error) as exc:  # a damaged flatbuffer, in any accessor
        raise DataError(f"{path}: not a readable TFLite model ({type(exc).__name__}: {exc})") from None


def _schema() -> ModuleType | None:
    for name in SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None
