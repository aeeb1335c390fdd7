"""Machinery every built-in predictor shares: names, hooks, output splitting."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modeldeploy.errors import PredictionError

if TYPE_CHECKING:
    from modeldeploy.messages import Signature

DEFAULT_VERSION = "1"
"""The version a predictor reports when none is given (V2 versions are strings)."""

Hook = Callable[[Any], Any]


def default_name(obj: object) -> str:
    """
    Return a short, stable name for *obj*: ``score``, ``MLP.predict``, ``LogisticRegression``.

    A function or method gives its qualified name without the ``<locals>``
    prefix of a nested definition; any other object gives its class's name.
    """
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(qualname, str) or isinstance(obj, type):
        qualname = type(obj).__qualname__
    return qualname.rsplit(".<locals>.", 1)[-1]


def split_outputs(result: Any, expected: int, source: str) -> Sequence[Any]:
    """
    Turn a batched model's result into one output per input, or raise.

    A list or tuple is taken as is. A NumPy array is split along its first
    axis: a 1-D array into Python scalars (``tolist()``, what every serializer
    carries), a higher one into row arrays. A mapping of name to batch (a
    multi-output model) becomes one mapping per input. Anything else iterable
    is listed.

    Raises:
        PredictionError: The result is not a sequence, or its length is not
            *expected*; the details (the model's *source* name, the lengths)
            travel in the chained cause, the message stays client-safe.
    """
    if isinstance(result, (list, tuple)):
        outputs: Sequence[Any] = result
    elif isinstance(result, Mapping):
        outputs = _split_mapping(result, expected, source)
    else:
        try:
            outputs = _split_array(result)
        except TypeError as exc:
            raise PredictionError("model returned a value that is not a batch") from exc
    if len(outputs) != expected:
        detail = f"{source} returned {len(outputs)} outputs for a batch of {expected}"
        raise PredictionError("model returned the wrong number of outputs") from ValueError(detail)
    return outputs


def _split_array(result: Any) -> list[Any]:
    ndim = getattr(result, "ndim", None)
    if ndim == 1:
        return list(result.tolist())
    if ndim == 0 or isinstance(result, (str, bytes)):
        raise TypeError(f"a scalar of type {type(result).__name__} is not a batch")
    return list(result)


def _split_mapping(result: Mapping[Any, Any], expected: int, source: str) -> list[Any]:
    columns = {key: split_outputs(value, expected, source) for key, value in result.items()}
    return [{key: column[i] for key, column in columns.items()} for i in range(expected)]


class PredictorBase:
    """
    Shared behaviour of the built-in predictors.

    ``predict`` applies the per-item *preprocess* hook, the subclass's
    ``_predict_batch`` and the per-item *postprocess* hook, in that order, and
    answers an empty batch without calling the model. ``load`` runs the
    subclass's ``_load`` once, even when called from several threads; when
    ``_load`` raises, the next ``load`` tries again.

    Args:
        model: What the subclass calls; its name is the default *name*.

    Attributes:
        name: The model name monitors and V2 metadata report.
        version: The model version, :data:`DEFAULT_VERSION` unless given.
        signature: Declared inputs and outputs, or ``None``.
        batched: Whether the model sees whole batches (``False``: one call
            per item).
    """

    name: str
    version: str
    signature: Signature | None
    batched: bool

    def __init__(
        self,
        model: Any,
        *,
        name: str | None,
        version: str | None,
        signature: Signature | None,
        batched: bool,
        preprocess: Hook | None,
        postprocess: Hook | None,
    ) -> None:
        self._model = model
        self.name = default_name(model) if name is None else name
        self.version = DEFAULT_VERSION if version is None else version
        self.signature = signature
        self.batched = batched
        self._preprocess = preprocess
        self._postprocess = postprocess
        self._loaded = False
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Load the model once; later calls return at once."""
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        """Do the work of :meth:`load`; nothing by default."""

    # replicas are deep copies of one predictor, and a lock cannot be copied
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_load_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()

    def predict(self, batch: Sequence[Any], /) -> Sequence[Any]:
        """
        Return one output per item of *batch*, in order.

        Exceptions the model (or a hook) raises propagate unchanged; the
        service turns them into :class:`~modeldeploy.errors.PredictionError`.

        Raises:
            PredictionError: A batched model returned a value that is not a
                batch, or a batch of the wrong length.
        """
        if len(batch) == 0:
            return []
        pre = self._preprocess
        if pre is not None:
            batch = [pre(item) for item in batch]
        outputs = self._predict_batch(batch)
        post = self._postprocess
        if post is not None:
            return [post(output) for output in outputs]
        return outputs

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} version={self.version!r}"
            f" batched={self.batched}>"
        )
