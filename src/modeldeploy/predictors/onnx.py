"""
A predictor for ONNX models, run by ONNX Runtime.

:func:`onnx_predictor` takes the path (or the bytes) of an ``.onnx`` file: a
model exported from scikit-learn (skl2onnx), PyTorch (``torch.onnx.export``),
LightGBM or XGBoost (onnxmltools). ONNX Runtime is imported when the predictor
is built, never when this module is; the session is created by ``load()``, once
per replica. An ONNX file is a graph of operators and weights: loading one runs
no Python code, unlike a pickle.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from modeldeploy._extras import import_extra
from modeldeploy.errors import ModelLoadError
from modeldeploy.interfaces import Predictor
from modeldeploy.messages import Signature, TensorSpec

from ._base import PredictorBase, split_outputs

__all__ = ["EXTRA", "onnx_predictor"]

EXTRA = "modeldeploy[onnx]"
"""
The extra that brings ONNX Runtime: ``pip install "modeldeploy[onnx]"``.

.. versionadded:: 0.1.0
"""

# ONNX tensor element types -> the dtype names of a Signature
_DTYPES = {
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
    "tensor(string)": "str",
}


def _import_onnxruntime() -> Any:
    # the shared helper's error names what to install: pip install 'modeldeploy[...]'
    return import_extra("onnxruntime", "ONNX models")


def _spec(node: Any) -> TensorSpec:
    """One input or output of the session, without its batch axis."""
    dtype = _DTYPES.get(node.type, "object")
    shape = node.shape
    if not isinstance(shape, list) or not shape:
        return TensorSpec(node.name, dtype, None if not isinstance(shape, list) else ())
    # symbolic ("N", "batch") or unknown (None) dimensions are free
    return TensorSpec(node.name, dtype, tuple(d if isinstance(d, int) else -1 for d in shape[1:]))


class _ONNXPredictor(PredictorBase):
    """The predictor :func:`onnx_predictor` returns."""

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        outputs: Sequence[str] | None,
        providers: Sequence[str],
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        self._ort = _import_onnxruntime()
        self._numpy = import_extra("numpy", "modeldeploy.predictors.onnx")
        self._output_names = list(outputs) if outputs is not None else None
        self._providers = list(providers)
        self._session: Any = None
        self._inputs: list[tuple[str, Any]] = []

    # a session cannot be copied: each replica creates its own in load()
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_session"] = None
        state["_loaded"] = False
        del state["_ort"], state["_numpy"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._ort = _import_onnxruntime()
        self._numpy = import_extra("numpy", "modeldeploy.predictors.onnx")

    def _load(self) -> None:
        model = self._model
        source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
        try:
            session = self._ort.InferenceSession(source, providers=self._providers)
        except Exception as exc:
            raise ModelLoadError("the ONNX model cannot be loaded") from exc
        inputs = session.get_inputs()
        outputs = [o for o in session.get_outputs() if _wanted(o.name, self._output_names)]
        if self._output_names is not None:
            missing = set(self._output_names) - {o.name for o in outputs}
            if missing:
                raise ModelLoadError(f"the ONNX model has no output {sorted(missing)[0]!r}")
        numpy_dtype = self._numpy.dtype
        self._inputs = [
            (i.name, numpy_dtype(_DTYPES[i.type]) if i.type in _DTYPES else None) for i in inputs
        ]
        self._output_names = [o.name for o in outputs]
        if self.signature is None:
            self.signature = Signature([_spec(i) for i in inputs], [_spec(o) for o in outputs])
        self._session = session

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        asarray = self._numpy.asarray
        if len(self._inputs) == 1:
            ((name, dtype),) = self._inputs
            feeds = {name: asarray(batch, dtype=dtype)}
        else:
            feeds = {
                name: asarray([item[name] for item in batch], dtype=dtype)
                for name, dtype in self._inputs
            }
        names = self._output_names
        results = self._session.run(names, feeds)
        assert names is not None  # set by _load
        if len(names) == 1:
            return split_outputs(results[0], len(batch), self.name)
        return split_outputs(dict(zip(names, results, strict=True)), len(batch), self.name)


def _wanted(name: str, names: Sequence[str] | None) -> bool:
    return names is None or name in names


def onnx_predictor(
    model: str | os.PathLike[str] | bytes,
    *,
    outputs: Sequence[str] | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    signature: Signature | None = None,
    preprocess: Callable[[Any], Any] | None = None,
    postprocess: Callable[[Any], Any] | None = None,
    name: str | None = None,
    version: str | None = None,
) -> Predictor:
    """
    Make a batched :class:`~modeldeploy.Predictor` from an ONNX model.

    Each item of a batch is one example without the batch axis (a feature
    vector for a ``[N, 4]`` input); items are stacked into one array per input,
    in the input's dtype, and the session runs once per batch. A model with
    several inputs takes a mapping of input name to value per item. With one
    output, each item's answer is its row of that output; with several, a
    mapping of output name to row (the V2 API returns each as a tensor).

    ``load()`` creates the ``onnxruntime.InferenceSession`` and, unless one is
    given, reads the signature from the model: each input and output with its
    dtype and its shape without the batch axis (symbolic dimensions are free).

    Args:
        model: The ``.onnx`` file's path, or its bytes.
        outputs: The outputs to compute and return, by name; all by default.
            A scikit-learn classifier converted by skl2onnx has ``label`` and
            ``probabilities``.
        providers: ONNX Runtime execution providers, in order of preference.
        signature: Declared inputs and outputs, instead of the model's own.
        preprocess: Called on each item before the model.
        postprocess: Called on each output after the model.
        name: The model's name; defaults to ``"onnx"``.
        version: The model's version; defaults to ``"1"``.

    Raises:
        ModuleNotFoundError: onnxruntime is not installed (the ``onnx`` extra).

    .. versionadded:: 0.1.0
    """
    return _ONNXPredictor(
        model,
        outputs=outputs,
        providers=providers,
        signature=signature,
        preprocess=preprocess,
        postprocess=postprocess,
        name=name or "onnx",
        version=version,
        batched=True,
    )
