"""
The ``onnx`` format: an ONNX model, run by onnxruntime.

An ONNX file is a graph of operators and weights, no code, so it loads without
trust. Saving takes an ``onnx.ModelProto`` (what skl2onnx, ``torch.onnx`` and
tf2onnx produce) or the bytes of one. Loading returns the predictor of
:func:`modeldeploy.predictors.onnx.onnx_predictor` on the verified bytes: its
``load()`` creates the session, and without a saved signature it reads the
model's own. Needs the ``onnx`` extra (onnxruntime; the ``onnx`` package is
needed only to build a model).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from . import require

if TYPE_CHECKING:
    from ...interfaces import Predictor
    from ...messages import Signature

__all__ = ["ONNX_FORMAT", "OnnxFormat"]


class OnnxFormat:
    """
    Saves the ModelProto's bytes; loads them as an ONNX Runtime predictor.

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
        """Return *data* once onnxruntime is there: the session is the predictor's job."""
        require("onnxruntime", "onnx", self.name)
        return data

    def predictor(
        self, value: Any, *, factory: Any, signature: Signature | None, name: str, version: str
    ) -> Predictor:
        """Return an :func:`~modeldeploy.predictors.onnx.onnx_predictor` of the bytes."""
        from ...predictors.onnx import onnx_predictor

        return onnx_predictor(value, signature=signature, name=name, version=version)


ONNX_FORMAT: Final = OnnxFormat()
