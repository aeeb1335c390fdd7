"""Predictors made from a plain callable, batched or called item by item."""

from __future__ import annotations

from collections.abc import Sequence
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

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        fn = self._model
        if self.batched:
            return split_outputs(fn(batch), len(batch), self.name)
        return [fn(item) for item in batch]
