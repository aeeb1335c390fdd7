"""
The ``torch`` format: a PyTorch module's state dict.

The artifact is ``torch.save(module.state_dict())``: tensors only, read back
with ``torch.load(weights_only=True)``, which refuses to run code, so it loads
without trust. The module's architecture is code: the version's ``factory``
(by default the saved module's class, ``"package.module:Class"``) is called
with no argument to build the module, which then gets the state dict and is
put in eval mode. Needs the ``torch`` extra.

The loaded model stacks a batch into one float32 tensor (the dtype of the
signature's first input when it declares one), runs the module under
``torch.inference_mode()`` and answers with the output as a NumPy array.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ...errors import ModelLoadError
from . import require

if TYPE_CHECKING:
    from ...messages import Signature

__all__ = ["TORCH_FORMAT", "TorchFormat"]


class _TorchModel:
    """A module in eval mode behind ``predict(batch)``; what the torch format loads."""

    def __init__(self, module: Any, torch: Any, numpy: Any, dtype: str) -> None:
        self._module = module
        self._torch = torch
        self._np = numpy
        self._dtype = dtype

    def load(self) -> None:
        """Nothing to do: the module is built when the artifact is read."""

    def predict(self, batch: Sequence[Any]) -> Any:
        """Run the module on the stacked batch; its output as a NumPy array."""
        torch = self._torch
        inputs = torch.as_tensor(self._np.asarray(batch, dtype=self._dtype))
        with torch.inference_mode():
            return self._module(inputs).numpy()


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

    def build(
        self, value: Any, factory: Callable[..., Any] | None, signature: Signature | None
    ) -> Any:
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
        torch = require("torch", "torch", self.name)
        numpy = require("numpy", "torch", self.name)
        module = factory()
        module.load_state_dict(value)
        module.eval()
        dtype = "float32"
        if signature is not None and signature.inputs:
            declared = signature.inputs[0].dtype
            dtype = declared if declared not in ("object", "str", "bytes") else dtype
        return _TorchModel(module, torch, numpy, dtype)


TORCH_FORMAT: Final = TorchFormat()
