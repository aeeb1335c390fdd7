"""Predictors made from a plain callable, batched or called item by item."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._base import PredictorBase, split_outputs

__all__: list[str] = []


class _FunctionPredictor(PredictorBase):
    """
    A predictor around a callable; built by :func:`modeldeploy.predictor`.

    With ``batched=False`` the callable gets one item and returns one output;
    with ``batched=True`` it gets the whole batch (a list) and returns one
    output per item (a sequence, an array split along its first axis, or a
    mapping of name to batch). ``load()`` has nothing to do.
    """

    def _per_item(self) -> Callable[[Any], Any] | None:
        """The callable that answers one item, when a batch of one adds nothing to it.

        The service calls it directly for a single inline request, sparing the
        batch of one: the plain function when it is not batched and has no hooks.
        """
        if self.batched or self._preprocess is not None or self._postprocess is not None:
            return None
        fn: Callable[[Any], Any] = self._model
        return fn

    def predict(self, batch: Sequence[Any], /) -> Sequence[Any]:
        """
        Return one output per item of *batch*, in order.

        Raises:
            PredictionError: A batched model returned a value that is not a
                batch, or a batch of the wrong length.
        """
        if self.batched or self._preprocess is not None or self._postprocess is not None:
            return super().predict(batch)
        # the inline hot path: one call per item, at C speed, and [] for []
        return list(map(self._model, batch))

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        fn = self._model
        if self.batched:
            return split_outputs(fn(batch), len(batch), self.name)
        return [fn(item) for item in batch]
