"""Predictors made from an object with ``load()`` and ``predict()``."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from modeldeploy.messages import Signature

from ._base import PredictorBase, split_outputs
from ._coroutines import is_async, run

__all__: list[str] = []


class _ObjectPredictor(PredictorBase):
    """
    A predictor around a user's model class; built by :func:`modeldeploy.predictor`.

    ``load()`` calls the object's ``load()`` once (a failed load is retried by
    the next call). ``predict`` calls the object's *method* with the whole
    batch, as the :class:`~modeldeploy.Predictor` protocol does, or once per
    item with ``batched=False``. The object's own ``name``, ``version`` and
    ``signature`` attributes are used when present and not overridden.
    """

    def __init__(
        self,
        obj: Any,
        *,
        method: str,
        signature: Signature | None,
        name: str | None,
        version: str | None,
        **options: Any,
    ) -> None:
        if name is None:
            own_name = getattr(obj, "name", None)
            name = own_name if isinstance(own_name, str) else None
        if version is None:
            own_version = getattr(obj, "version", None)
            version = own_version if isinstance(own_version, str) else None
        if signature is None:
            own_signature = getattr(obj, "signature", None)
            signature = own_signature if isinstance(own_signature, Signature) else None
        super().__init__(obj, name=name, version=version, signature=signature, **options)
        self._method = getattr(obj, method)
        # awaited at each call, not wrapped: a replica's deep copy rebinds the method
        self._async = is_async(self._method)

    def _load(self) -> None:
        loaded = self._model.load()
        if inspect.iscoroutine(loaded):  # async def load()
            run(loaded)

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        method = self._method
        if self._async:
            if self.batched:
                return split_outputs(run(method(batch)), len(batch), self.name)
            return [run(method(item)) for item in batch]
        if self.batched:
            return split_outputs(method(batch), len(batch), self.name)
        return [method(item) for item in batch]
