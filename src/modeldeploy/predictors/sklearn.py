"""
Predictors for scikit-learn-style models: ``predict`` / ``predict_proba`` on a 2-D array.

Any object with the scikit-learn estimator API qualifies (XGBoost's and
LightGBM's sklearn wrappers too); scikit-learn itself is never imported by this
module. NumPy is imported when the first such predictor is built.
"""

from __future__ import annotations

import importlib
import numbers
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modeldeploy.errors import ModelLoadError
from modeldeploy.messages import Signature, TensorSpec

from ._base import PredictorBase, split_outputs

if TYPE_CHECKING:
    import numpy as np

__all__ = ["signature_from_sklearn"]


class _SklearnPredictor(PredictorBase):
    """
    A predictor around a fitted estimator; built by :func:`modeldeploy.predictor`.

    ``predict`` stacks the batch's items (feature vectors) into one 2-D array
    with ``np.asarray``, calls the estimator's *method* once, and splits the
    result back into one output per item: a 1-D result (labels, regression
    values) into Python scalars, a 2-D one (``predict_proba``) into row arrays.
    With ``batched=False`` the estimator is called once per item, on a one-row
    array. ``load()`` checks that a scikit-learn estimator is fitted.
    """

    def __init__(self, model: Any, *, method: str, **options: Any) -> None:
        super().__init__(model, **options)
        # the function, not the module: a module cannot be deep-copied
        self._asarray = importlib.import_module("numpy").asarray
        self._method = getattr(model, method)

    def _load(self) -> None:
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
        asarray = self._asarray
        method = self._method
        if self.batched:
            return split_outputs(method(asarray(batch)), len(batch), self.name)
        outputs: list[Any] = []
        for item in batch:
            outputs.extend(split_outputs(method(asarray([item])), 1, self.name))
        return outputs


def _dtype_name(dtype: np.dtype[Any]) -> str:
    return {"U": "str", "S": "bytes", "O": "object"}.get(dtype.kind) or str(dtype.name)


def signature_from_sklearn(
    model: Any,
    *,
    method: str = "predict",
    dtype: str = "float64",
    input_name: str = "input",
    output_name: str = "output",
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

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> model = LogisticRegression().fit(np.eye(3), [0, 1, 1])
    >>> signature_from_sklearn(model).inputs
    (TensorSpec(name='input', dtype='float64', shape=(3,)),)

    Raises:
        ValueError: The model has no integer ``n_features_in_`` (not fitted,
            or not a scikit-learn-style estimator).

    .. versionadded:: 0.1.0
    """
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, numbers.Integral):
        raise ValueError(f"{type(model).__name__} has no n_features_in_; is it fitted?")
    inputs = (TensorSpec(input_name, dtype, (int(n_features),)),)
    np = importlib.import_module("numpy")
    classes = getattr(model, "classes_", None)
    if not (isinstance(classes, np.ndarray) and classes.ndim == 1):
        output = TensorSpec(output_name, "object")  # a regressor, or multi-output
    elif method == "predict":
        output = TensorSpec(output_name, _dtype_name(classes.dtype), ())
    elif method == "predict_proba":
        output = TensorSpec(output_name, "float64", (len(classes),))
    else:
        output = TensorSpec(output_name, "object")
    # attrs types the tuple converter's argument as an unsolved Iterable[_T_co]
    return Signature(inputs, (output,))
