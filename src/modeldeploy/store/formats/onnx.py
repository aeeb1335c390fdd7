"""
The ``onnx`` format: an ONNX model, run by onnxruntime.

An ONNX file is a graph of operators, no code, so it loads without trust.
Saving takes an ``onnx.ModelProto`` (what skl2onnx, ``torch.onnx`` and
tf2onnx produce) or the bytes of one; loading builds an
``onnxruntime.InferenceSession`` on the CPU. Needs the ``onnx`` extra
(onnxruntime; the ``onnx`` package is needed only to build a model).

The loaded model takes a batch: for a one-input graph, the items stacked into
one array of the input's element type; for several inputs, items that map
input names to values. It answers with the output array for a one-output
graph, else a mapping of output name to batch (for example ``label`` and
``probabilities``), which the predictor splits into one mapping per item.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from . import require

__all__ = ["ONNX_FORMAT", "OnnxFormat"]

# ONNX tensor element types -> NumPy dtype names
_DTYPES: Final = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class _OnnxModel:
    """An InferenceSession behind ``predict(batch)``; what the onnx format loads."""

    def __init__(self, session: Any, numpy: Any) -> None:
        self._session = session
        self._np = numpy
        self._inputs = [(i.name, _DTYPES.get(i.type, "float32")) for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]

    def load(self) -> None:
        """Nothing to do: the session is built when the artifact is read."""

    def predict(self, batch: Sequence[Any]) -> Any:
        """Run the graph on *batch*; the output array, or a mapping of them."""
        asarray = self._np.asarray
        if len(self._inputs) == 1:
            name, dtype = self._inputs[0]
            feeds = {name: asarray(batch, dtype=dtype)}
        else:
            feeds = {
                name: asarray([_field(item, name) for item in batch], dtype=dtype)
                for name, dtype in self._inputs
            }
        results = self._session.run(self._outputs, feeds)
        if len(results) == 1:
            return results[0]
        return dict(zip(self._outputs, results, strict=True))


def _field(item: Any, name: str) -> Any:
    if not isinstance(item, Mapping):
        raise TypeError(f"the model has several inputs: each item maps names to values ({name})")
    return item[name]


class OnnxFormat:
    """
    Saves the ModelProto's bytes; loads an onnxruntime session on the CPU.

    .. versionadded:: 0.1.0
    """

    name: Final = "onnx"
    filename: Final = "model.onnx"
    pickled: Final = False

    def dump(self, model: Any, /) -> bytes:
        """Return the serialized ModelProto (*model* may already be its bytes)."""
        if isinstance(model, (bytes, bytearray, memoryview)):
            return bytes(model)
        serialize = getattr(model, "SerializeToString", None)
        if not callable(serialize):
            raise TypeError(
                "the onnx format saves an onnx ModelProto or its bytes, "
                f"not {type(model).__name__}"
            )
        data: bytes = serialize()
        return data

    def load(self, data: bytes, /, *, trusted: bool) -> Any:
        """Return a model whose ``predict(batch)`` runs the graph."""
        onnxruntime = require("onnxruntime", "onnx", self.name)
        numpy = require("numpy", "onnx", self.name)
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        return _OnnxModel(session, numpy)


ONNX_FORMAT: Final = OnnxFormat()
