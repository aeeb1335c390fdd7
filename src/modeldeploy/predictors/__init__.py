"""
Predictors: adapt a function, a scikit-learn-style estimator or a model class.

:func:`predictor` is the one entry point; it returns an object that fits the
:class:`~modeldeploy.Predictor` protocol and adds ``name``, ``version`` and
``batched`` attributes for monitors and the V2 model metadata.

>>> from modeldeploy.predictors import predictor
>>> double = predictor(lambda x: 2 * x, name="double")
>>> double.load()
>>> double.predict([1, 2, 3])
[2, 4, 6]

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from modeldeploy.interfaces import Predictor
from modeldeploy.messages import Signature

from ._base import DEFAULT_VERSION, default_name
from ._coroutines import blocking, is_async
from .function import _FunctionPredictor
from .object import _ObjectPredictor
from .sklearn import _SklearnPredictor, signature_from_sklearn

__all__ = ["DEFAULT_VERSION", "predictor", "signature_from_sklearn"]

_SKLEARN_METHODS = ("predict", "predict_proba")


def _has_method(obj: object, name: str) -> bool:
    # getattr, not hasattr on the class: scikit-learn hides predict_proba
    # behind a property that raises AttributeError when it does not apply
    return callable(getattr(obj, name, None))


def predictor(
    obj: Any,
    *,
    batched: bool | None = None,
    signature: Signature | None = None,
    method: str | None = None,
    preprocess: Callable[[Any], Any] | None = None,
    postprocess: Callable[[Any], Any] | None = None,
    name: str | None = None,
    version: str | None = None,
) -> Predictor:
    """
    Make a :class:`~modeldeploy.Predictor` from a model, whatever its kind.

    What *obj* is decides how it is called, in this order:

    1. An object with ``load()`` and ``predict()``: ``load()`` runs once, in
       the predictor's ``load()``; ``predict`` gets the whole batch (the
       :class:`~modeldeploy.Predictor` protocol). An object that already has
       ``signature``, ``name`` and ``version`` and gets no option here is
       returned as it is.
    2. A scikit-learn-style estimator (``predict`` or ``predict_proba``): the
       batch's feature vectors are stacked into a 2-D array, the estimator is
       called once, and its result is split back into rows.
    3. A callable: called once per item, or with the whole batch (a list)
       when ``batched=True``.

    An ``async def`` model (function, ``__call__``, or an object's ``predict``
    or ``load``) is awaited to completion on the thread that calls
    ``predict``, on an event loop of that thread's own (a helper thread's when
    that thread already runs one, as with ``asgi(..., inline=True)``), so it
    serves on every path, sync and async alike.

    Args:
        obj: The model: an instance (not a class), an estimator or a callable.
        batched: Whether the model takes a whole batch. ``None`` picks the
            kind's default: ``True`` for objects and estimators, ``False``
            for callables.
        signature: Declared inputs and outputs; requests are validated against
            it (see :mod:`modeldeploy.validation`). For an object, its own
            ``signature`` attribute is the default.
        method: The method to call on an object or estimator: ``"predict"``
            (the default when present), ``"predict_proba"``, or any other.
        preprocess: Called on each item before the model; its result is what
            the model sees.
        postprocess: Called on each output after the model.
        name: The model's name for monitors and V2 metadata; defaults to the
            object's ``name`` attribute, the function's qualified name
            (``"score"``, ``"MLP.predict"``) or the class name
            (``"LogisticRegression"``).
        version: The model's version; defaults to the object's ``version``
            attribute, else :data:`DEFAULT_VERSION` (``"1"``).

    Returns:
        A predictor. Its ``predict`` returns a list (or the model's own list
        or tuple) of the batch's length, and lets the model's exceptions
        propagate unchanged; only a batched model returning a wrong-length or
        non-batch result raises :class:`~modeldeploy.errors.PredictionError`
        there. It applies *preprocess* and *postprocess* itself.

    Raises:
        TypeError: *obj* is a class, or none of the kinds above, or
            *method* names no method of it, or a hook is not callable.

    .. versionadded:: 0.1.0
    """
    if isinstance(obj, type):
        raise TypeError(
            f"predictor() takes a model instance, got the class {obj.__name__}; "
            f"call it first: predictor({obj.__name__}(...))"
        )
    for hook_name, hook in (("preprocess", preprocess), ("postprocess", postprocess)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{hook_name} must be callable, got {type(hook).__name__}")
    options: dict[str, Any] = {
        "signature": signature,
        "preprocess": preprocess,
        "postprocess": postprocess,
        "name": name,
        "version": version,
    }

    if _has_method(obj, "load") and _has_method(obj, "predict"):
        untouched = batched is None and method is None and all(v is None for v in options.values())
        complete = all(hasattr(obj, a) for a in ("signature", "name", "version"))
        if untouched and complete and not is_async(obj.predict):
            return cast(Predictor, obj)
        method = _checked_method(obj, method or "predict")
        return _ObjectPredictor(obj, method=method, batched=batched is not False, **options)

    if method is not None or any(_has_method(obj, m) for m in _SKLEARN_METHODS):
        default = next((m for m in _SKLEARN_METHODS if _has_method(obj, m)), "predict")
        method = _checked_method(obj, method or default)
        return _SklearnPredictor(obj, method=method, batched=batched is not False, **options)

    if callable(obj):
        if is_async(obj):
            # run to completion on the calling thread: every path calls predict() in sync
            options["name"] = name if name is not None else default_name(obj)
            obj = blocking(obj)
        return _FunctionPredictor(obj, batched=batched is True, **options)

    raise TypeError(
        f"cannot make a predictor from {type(obj).__name__}: expected a callable, "
        "an object with predict() / predict_proba(), or one with load() and predict()"
    )


def _checked_method(obj: object, method: str) -> str:
    if not _has_method(obj, method):
        raise TypeError(f"{type(obj).__name__} has no method {method!r}")
    return method
