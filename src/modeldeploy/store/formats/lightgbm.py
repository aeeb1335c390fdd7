"""
The ``lightgbm`` format: a LightGBM model in its own text file.

LightGBM's text model holds the trees and parameters, no code, so it loads
without trust. Saving takes a ``lightgbm.Booster`` or a fitted scikit-learn
style estimator (``LGBMClassifier``...), whose booster is saved; loading
returns the ``Booster``, whose ``predict`` the predictor calls on the stacked
batch (probabilities for a classifier). Needs the ``lightgbm`` extra.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import Any, Final

from . import require

__all__ = ["LIGHTGBM_FORMAT", "LightGBMFormat"]


class LightGBMFormat:
    """
    Saves ``Booster.model_to_string()``, loads ``lightgbm.Booster(model_str=...)``.

    .. versionadded:: 0.1.0
    """

    name: Final = "lightgbm"
    filename: Final = "model.txt"
    pickled: Final = False

    def dump(self, model: Any, /) -> bytes:
        """Return the text model of a Booster, or of an estimator's ``booster_``."""
        booster = getattr(model, "booster_", model)
        if not callable(getattr(booster, "model_to_string", None)):
            raise TypeError(
                f"the lightgbm format saves a lightgbm Booster or estimator, "
                f"not {type(model).__name__}"
            )
        text: str = booster.model_to_string()
        return text.encode()

    def load(self, data: bytes, /, *, trusted: bool) -> Any:
        """Return the ``lightgbm.Booster`` of *data*."""
        lightgbm = require("lightgbm", "lightgbm", self.name)
        return lightgbm.Booster(model_str=data.decode())


LIGHTGBM_FORMAT: Final = LightGBMFormat()
