"""
Predictors for scikit-learn-style models: ``predict`` / ``predict_proba`` on a 2-D array.

Any object with the scikit-learn estimator API qualifies (XGBoost's and
LightGBM's sklearn wrappers too); scikit-learn itself is never imported by this
module. NumPy is imported when the first such predictor is built.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from modeldeploy._extras import import_extra
from modeldeploy.errors import ModelLoadError, ValidationError
from modeldeploy.messages import Signature, TensorSpec

from ._base import PredictorBase, split_outputs

if TYPE_CHECKING:
    import numpy as np

__all__ = ["signature_from_sklearn"]


class _SklearnPredictor(PredictorBase):
    """
    A predictor around a fitted estimator; built by :func:`modeldeploy.predictor`.

    Each item of a batch is one of:

    * a feature vector (a list, a 1-D array): one row, one output;
    * a record, a mapping of feature name to value (``{"sepal_length": 5.1, ...}``):
      one row, one output;
    * several rows: a 2-D array or list of vectors (a V2 tensor of shape
      ``[n, features]``, tritonclient's usual ``[1, 4]``), a list of records,
      or a mapping of feature name to a column of values: an array of *n*
      outputs.

    The rows of the whole batch are stacked into one input, the estimator's
    *method* is called once, and the result is split back: a 1-D result
    (labels, regression values) into Python scalars, a 2-D one
    (``predict_proba``) into row arrays. A model fitted on a pandas DataFrame
    (it has ``feature_names_in_``) gets a DataFrame with those columns, so its
    column selectors and feature names work; records are read by name, vectors
    in that order. With ``batched=False`` the estimator is called once per
    item. ``load()`` checks that a scikit-learn estimator is fitted.
    """

    def __init__(self, model: Any, *, method: str, **options: Any) -> None:
        super().__init__(model, **options)
        # the function, not the module: a module cannot be deep-copied
        self._asarray = import_extra("numpy", "a scikit-learn-style model").asarray
        self._method = getattr(model, method)
        names = getattr(model, "feature_names_in_", None)
        self._columns: list[str] | None = (
            [str(n) for n in names] if names is not None and len(names) else None
        )
        self._frame: Any = None  # pandas.DataFrame, when the model has feature names

    def _load(self) -> None:
        if self._columns is not None:
            try:
                self._frame = import_extra("pandas", "a model fitted on a DataFrame").DataFrame
            except ImportError:  # fitted on a DataFrame elsewhere: vectors still work
                self._frame = None
        # an estimator's class comes from sklearn, so sklearn.base is already
        # imported when it matters; no import cost for other libraries' models
        base = sys.modules.get("sklearn.base")
        if base is None or not isinstance(self._model, base.BaseEstimator):
            return
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(self._model)
        except NotFittedError as exc:
            raise ModelLoadError("model is not fitted") from exc

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        if not self.batched:
            outputs: list[Any] = []
            for item in batch:
                outputs.extend(self._predict_items([item]))
            return outputs
        return self._predict_items(batch)

    def _predict_items(self, batch: Sequence[Any]) -> Sequence[Any]:
        if self._columns is None and all(_is_vector(item) for item in batch):
            # the common case, one feature vector per item: one asarray, no regrouping
            result = self._method(self._asarray(batch))
            return split_outputs(result, len(batch), self.name)
        rows: list[Any] = []
        counts: list[int | None] = []  # rows per item; None: one row, one output
        for item in batch:
            item_rows, several = self._rows(item)
            rows.extend(item_rows)
            counts.append(len(item_rows) if several else None)
        if self._columns is not None and self._frame is not None:
            features = self._frame(rows, columns=self._columns)
        else:
            features = self._asarray(rows)
        result = self._method(features)
        per_row = split_outputs(result, len(rows), self.name)
        outputs: list[Any] = []
        start = 0
        for count in counts:
            if count is None:
                outputs.append(per_row[start])
                start += 1
            else:
                group = result[start : start + count]
                outputs.append(group if hasattr(group, "ndim") else list(group))
                start += count
        return outputs

    def _rows(self, item: Any) -> tuple[list[Any], bool]:
        """The rows one item holds (vectors, in column order), and whether it holds several."""
        if isinstance(item, Mapping):
            return self._record_rows(item)
        ndim = getattr(item, "ndim", None)
        if ndim == 2:
            return list(item), True
        if ndim is None and isinstance(item, (list, tuple)) and item:
            first = item[0]
            if isinstance(first, Mapping):
                return [self._record(record) for record in item], True
            if isinstance(first, (list, tuple)) or getattr(first, "ndim", 0) == 1:
                return list(item), True
        return [item], False

    def _record_rows(self, item: Mapping[Any, Any]) -> tuple[list[Any], bool]:
        columns = self._require_columns()
        values: list[Any] = [item.get(name) for name in columns]
        if not any(_is_column(v) for v in values):
            return [self._record(item)], False
        # columnar: each feature holds a column of values (V2 inputs named after features)
        self._check_names(item)
        if not all(_is_column(v) for v in values) or len({len(v) for v in values}) != 1:
            raise ValidationError("every feature needs a column of the same length")
        return [list(row) for row in zip(*values, strict=True)], True

    def _record(self, record: Any) -> list[Any]:
        if not isinstance(record, Mapping):
            raise ValidationError("a list of records holds mappings only")
        self._check_names(record)
        return [record[name] for name in self._require_columns()]

    def _require_columns(self) -> list[str]:
        if self._columns is None:
            raise ValidationError(
                "this model was not fitted with feature names: send a vector of features"
            )
        return self._columns

    def _check_names(self, record: Mapping[Any, Any]) -> None:
        columns = self._require_columns()
        missing = [name for name in columns if name not in record]
        if missing:
            raise ValidationError(f"record is missing feature {missing[0]!r}; needs {columns}")
        if len(record) != len(columns):
            unknown = next(key for key in record if key not in columns)
            raise ValidationError(f"record has unknown feature {unknown!r}; needs {columns}")


def _is_vector(item: Any) -> bool:
    """One feature vector (a 1-D array, or a list of numbers or strings)."""
    ndim = getattr(item, "ndim", None)
    if ndim is not None:
        return bool(ndim == 1)
    if isinstance(item, (list, tuple)):
        return not item or not isinstance(item[0], (list, tuple, Mapping))
    return False


def _is_column(value: Any) -> bool:
    ndim = getattr(value, "ndim", None)
    if ndim is not None:
        return bool(ndim == 1)
    return isinstance(value, (list, tuple))


def _dtype_name(dtype: np.dtype[Any]) -> str:
    return {"U": "str", "S": "bytes", "O": "object"}.get(dtype.kind) or str(dtype.name)


def signature_from_sklearn(
    model: Any,
    *,
    method: str = "predict",
    dtype: str = "float64",
    input_name: str = "input",
    output_name: str = "output",
    batch_axis: bool = False,
) -> Signature:
    """
    Describe a fitted estimator's input and output from its fitted attributes.

    The input is one feature vector of ``n_features_in_`` values of *dtype*.
    The output of ``predict`` is one scalar (of the dtype of ``classes_`` for
    a classifier); that of ``predict_proba`` one probability per class.

    Inference is explicit rather than automatic because ``n_features_in_`` does
    not say what the features are: a pipeline that one-hot encodes strings
    reports the same count as one that scales floats. Pass ``dtype="object"``
    for such a model.

    With ``batch_axis=True`` every shape starts with ``-1``, an axis of any
    size: a request is a matrix of rows (``[[5.1, 3.5, 1.4, 0.2]]``), as V2
    clients such as tritonclient send it (shape ``[1, 4]``), and the V2
    metadata says ``[-1, 4]`` as Triton's does; the answer has one output per row.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> model = LogisticRegression().fit(np.eye(3), [0, 1, 1])
    >>> signature_from_sklearn(model).inputs
    (TensorSpec(name='input', dtype='float64', shape=(3,)),)

    >>> signature_from_sklearn(model, batch_axis=True).inputs[0].shape
    (-1, 3)

    Raises:
        ValueError: The model has no integer ``n_features_in_`` (not fitted,
            or not a scikit-learn-style estimator).

    .. versionadded:: 0.1.0
       *batch_axis*.
    """
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, numbers.Integral):
        raise ValueError(f"{type(model).__name__} has no n_features_in_; is it fitted?")
    inputs: tuple[TensorSpec, ...] = (TensorSpec(input_name, dtype, (int(n_features),)),)
    np = import_extra("numpy", "signature_from_sklearn")
    classes = getattr(model, "classes_", None)
    if not (isinstance(classes, np.ndarray) and classes.ndim == 1):
        output = TensorSpec(output_name, "object")  # a regressor, or multi-output
    elif method == "predict":
        output = TensorSpec(output_name, _dtype_name(classes.dtype), ())
    elif method == "predict_proba":
        output = TensorSpec(output_name, "float64", (len(classes),))
    else:
        output = TensorSpec(output_name, "object")
    if batch_axis:
        inputs = tuple(attrs.evolve(spec, shape=(-1, *(spec.shape or ()))) for spec in inputs)
        if output.shape is not None:
            output = attrs.evolve(output, shape=(-1, *output.shape))
    # attrs types the tuple converter's argument as an unsolved Iterable[_T_co]
    return Signature(inputs, (output,))
