"""
The ``torch`` format: a PyTorch module's state dict.

The artifact is ``torch.save(module.state_dict())``: tensors only, read back
with ``torch.load(weights_only=True)``, which refuses to run code, so it loads
without trust. The module's architecture is code: the version's ``factory``
(by default the saved module's class, ``"package.module:Class"``) is called
with no argument to build the module, which then gets the state dict. The
result is a :func:`modeldeploy.predictors.torch.torch_predictor` of that
module. Needs the ``torch`` extra.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ...errors import ModelLoadError
from . import require

if TYPE_CHECKING:
    from ...interfaces import Predictor
    from ...messages import Signature

__all__ = ["TORCH_FORMAT", "TorchFormat"]


class TorchFormat:
    """
    Saves a module's state dict with ``torch.save``; rebuilds the module at load.

    .. versionadded:: 0.1.0
    """

    name: Final = "torch"
    filename: Final = "state_dict.pt"
    pickled: Final = False

    def dump(self, model: Any, /) -> bytes:
        """Return ``torch.save`` of *model*'s state dict (or of *model*, a state dict)."""
        torch = require("torch", "torch", self.name)
        state = model.state_dict() if callable(getattr(model, "state_dict", None)) else model
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def load(self, data: bytes, /, *, trusted: bool) -> Any:
        """Return the state dict in *data*, read with ``weights_only=True``."""
        torch = require("torch", "torch", self.name)
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")

    def predictor(
        self,
        value: Any,
        *,
        factory: Callable[..., Any] | None,
        signature: Signature | None,
        name: str,
        version: str,
    ) -> Predictor:
        """
        Build the module with *factory*, load the state dict *value* into it.

        Raises:
            ModelLoadError: There is no factory: a state dict is not a model.
        """
        if factory is None:
            raise ModelLoadError(
                "a torch state dict needs its module: save with factory='package.module:Class' "
                "or pass factory= to load()"
            )
        from ...predictors.torch import torch_predictor

        module = factory()
        module.load_state_dict(value)
        return torch_predictor(module, signature=signature, name=name, version=version)


TORCH_FORMAT: Final = TorchFormat()
