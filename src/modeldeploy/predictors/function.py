"""Predictors made from a plain callable, batched or called item by item."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._base import Hook, PredictorBase, default_name, split_outputs

if TYPE_CHECKING:
    from modeldeploy.messages import Signature

__all__: list[str] = []


class _FunctionPredictor(PredictorBase):
    """
    A predictor around a callable; built by :func:`modeldeploy.predictor`.

    With ``batched=False`` the callable gets one item and returns one output;
    with ``batched=True`` it gets the whole batch (a list) and returns one
    output per item (a sequence, an array split along its first axis, or a
    mapping of name to batch). ``load()`` has nothing to do.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        batched: bool,
        signature: Signature | None,
        preprocess: Hook | None,
        postprocess: Hook | None,
        name: str | None,
        version: str | None,
    ) -> None:
        super().__init__(
            name=default_name(fn) if name is None else name,
            version=version,
            signature=signature,
            batched=batched,
            preprocess=preprocess,
            postprocess=postprocess,
        )
        self._fn = fn

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        fn = self._fn
        if self.batched:
            return split_outputs(fn(batch), len(batch), self.name)
        return [fn(item) for item in batch]
