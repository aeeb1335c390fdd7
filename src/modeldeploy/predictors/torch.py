"""
A predictor for PyTorch models, run in inference mode.

:func:`torch_predictor` takes an ``nn.Module`` or the path of a program saved
with ``torch.export.save`` (a ``.pt2`` file). PyTorch is imported when the
predictor is built, never when this module is; a ``.pt2`` file is loaded by
``load()``, once per replica.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modeldeploy._extras import import_extra
from modeldeploy.errors import ModelLoadError
from modeldeploy.interfaces import Predictor
from modeldeploy.messages import Signature

from ._base import PredictorBase, split_outputs

__all__ = ["EXTRA", "torch_predictor"]

EXTRA = "modeldeploy[torch]"
"""
The extra that brings PyTorch: ``pip install "modeldeploy[torch]"``.

.. versionadded:: 0.1.0
"""


def _import_torch() -> Any:
    # the shared helper's error names what to install: pip install 'modeldeploy[...]'
    return import_extra("torch", "PyTorch models")


class _TorchPredictor(PredictorBase):
    """The predictor :func:`torch_predictor` returns."""

    def __init__(self, model: Any, *, device: str, dtype: str, **options: Any) -> None:
        self._torch = _import_torch()
        if isinstance(model, (str, os.PathLike)):
            source: Any = os.fspath(model)
            default_name = os.path.splitext(os.path.basename(source))[0] or "torch"
        elif isinstance(model, self._torch.nn.Module):
            source = model
            default_name = type(model).__name__
        else:
            raise TypeError(
                f"torch_predictor() takes an nn.Module or a .pt2 path, got {type(model).__name__}"
            )
        if options.get("name") is None:
            options["name"] = default_name
        super().__init__(source, **options)
        self._device = self._torch.device(device)
        self._dtype = getattr(self._torch, dtype)
        self._module: Any = None

    # torch, a module object, is not deep-copied into each replica
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        del state["_torch"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._torch = _import_torch()

    def _load(self) -> None:
        torch = self._torch
        model = self._model
        if isinstance(model, str):
            try:
                model = torch.export.load(model).module()
            except Exception as exc:
                raise ModelLoadError("the PyTorch program cannot be loaded") from exc
        else:
            model.eval()  # dropout off, batch norm frozen
        self._module = model.to(self._device)

    def _predict_batch(self, batch: Sequence[Any]) -> Sequence[Any]:
        torch = self._torch
        with torch.inference_mode():
            first = batch[0]
            if isinstance(first, Mapping):
                kwargs = {key: self._tensor([item[key] for item in batch]) for key in first}
                result = self._module(**kwargs)
            else:
                result = self._module(self._tensor(batch))
        return split_outputs(_to_numpy(result), len(batch), self.name)

    def _tensor(self, items: Sequence[Any]) -> Any:
        torch = self._torch
        if all(isinstance(item, torch.Tensor) for item in items):
            stacked = torch.stack(list(items))
        else:
            numpy = import_extra("numpy", "modeldeploy.predictors.torch")
            stacked = torch.from_numpy(numpy.asarray(items))
        # floats take the model's dtype; integer inputs (token ids) keep theirs
        dtype = self._dtype if stacked.is_floating_point() else stacked.dtype
        return stacked.to(device=self._device, dtype=dtype)


def _to_numpy(result: Any) -> Any:
    if isinstance(result, Mapping):
        return {key: _to_numpy(value) for key, value in result.items()}
    if isinstance(result, (list, tuple)):
        # several outputs: name them output0, output1... as the V2 API does
        return {f"output{i}": _to_numpy(value) for i, value in enumerate(result)}
    return result.detach().cpu().numpy()


def torch_predictor(
    model: Any,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    signature: Signature | None = None,
    preprocess: Callable[[Any], Any] | None = None,
    postprocess: Callable[[Any], Any] | None = None,
    name: str | None = None,
    version: str | None = None,
) -> Predictor:
    """
    Make a batched :class:`~modeldeploy.Predictor` from a PyTorch model.

    Each item of a batch is one example without the batch axis; items are
    stacked into one tensor (floating point ones cast to *dtype*) on *device*,
    and the model runs once per batch under ``torch.inference_mode()``. A
    model that takes keyword inputs gets a mapping of name to value per item.
    The result is split back into one NumPy row per item; a tuple of outputs
    becomes ``{"output0": ..., "output1": ...}``, a dict keeps its keys.

    ``load()`` puts a module in eval mode and moves it to *device*; a path is
    loaded with ``torch.export.load`` (a program saved by
    ``torch.export.save``), so no pickle of your classes is needed to serve it.

    Args:
        model: An ``nn.Module``, or the path of a ``.pt2`` file.
        device: Where the model runs: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: The ``torch`` dtype floating point inputs are cast to.
        signature: Declared inputs and outputs; requests are validated against it.
        preprocess: Called on each item before the model.
        postprocess: Called on each output after the model.
        name: The model's name; defaults to the module's class or the file's name.
        version: The model's version; defaults to ``"1"``.

    Raises:
        ModuleNotFoundError: torch is not installed (the ``torch`` extra).
        TypeError: *model* is neither a module nor a path.

    .. versionadded:: 0.1.0
    """
    return _TorchPredictor(
        model,
        device=device,
        dtype=dtype,
        signature=signature,
        preprocess=preprocess,
        postprocess=postprocess,
        name=name,
        version=version,
        batched=True,
    )
