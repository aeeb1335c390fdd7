"""
Artifact formats of the model store, and the registry that finds them by name.

A format turns a model into the bytes of one artifact file and back. The
built-ins are imported when first asked for, and each imports its framework
only when it saves or loads, so a missing framework fails with the extra to
install. Third-party formats register with :func:`register` or through the
``modeldeploy.formats`` entry-point group (the entry point's name is the
format's name; it loads a :class:`ModelFormat` instance).

========== ================ =================================== ==========
name       file             model                               extra
========== ================ =================================== ==========
json       model.json       JSON data (with a ``factory``)      (core)
msgpack    model.msgpack    msgpack data (with a ``factory``)   (core)
pickle     model.pkl        any picklable object (see below)    (core)
protobuf   model.pb         data (with a ``factory``)           (core)
xml        model.xml        data (with a ``factory``)           xml
joblib     model.joblib     scikit-learn estimator; **pickled** joblib
onnx       model.onnx       an ONNX ``ModelProto`` or its bytes onnx
torch      state_dict.pt    a ``torch.nn.Module`` (state dict)  torch
lightgbm   model.txt        a LightGBM ``Booster`` or estimator lightgbm
========== ================ =================================== ==========

A **pickled** format runs code from the file when it loads, so it loads only
when the store vouches for the version (signed with the store's key) or the
caller passes ``trusted=True``: the store tells ``load`` which, and the format
refuses otherwise. ``pickle`` untrusted goes through the restricted unpickler,
which reads plain data and NumPy arrays and refuses any other global.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from ...errors import ModelLoadError

__all__ = ["ENTRY_POINT_GROUP", "ModelFormat", "get", "names", "register", "require"]

logger = logging.getLogger("modeldeploy")

ENTRY_POINT_GROUP = "modeldeploy.formats"


@runtime_checkable
class ModelFormat(Protocol):
    """
    **Protocol:** writes a model into one artifact file and reads it back.

    Attributes:
        name: The registry name, recorded in the manifest (``"onnx"``).
        filename: The artifact's file name inside a version (``"model.onnx"``).
        pickled: Whether loading runs code the file names (joblib); such a
            format's ``load`` refuses when ``trusted`` is false.

    .. versionadded:: 0.1.0
    """

    name: str
    filename: str
    pickled: bool

    def dump(self, model: Any, /) -> bytes:
        """Return the artifact's bytes for *model*."""

    def load(self, data: bytes, /, *, trusted: bool) -> Any:
        """
        Return the model read from *data*: an object :func:`modeldeploy.predictor` takes.

        *trusted* says whether the store vouches for *data* (signed with its
        key, or trusted by the caller); a pickled format refuses to run code
        otherwise. A format may also offer the optional method
        ``predictor(value, *, factory, signature, name, version)``, which
        makes the :class:`~modeldeploy.Predictor` itself from what ``load``
        returned (onnx and torch do); otherwise the store calls *factory*
        (when there is one) and :func:`modeldeploy.predictor`.
        """


_BUILTINS: dict[str, str] = {
    "json": "modeldeploy.store.formats.serialized:JSON_FORMAT",
    "msgpack": "modeldeploy.store.formats.serialized:MSGPACK_FORMAT",
    "pickle": "modeldeploy.store.formats.serialized:PICKLE_FORMAT",
    "protobuf": "modeldeploy.store.formats.serialized:PROTOBUF_FORMAT",
    "xml": "modeldeploy.store.formats.serialized:XML_FORMAT",
    "joblib": "modeldeploy.store.formats.joblib:JOBLIB_FORMAT",
    "onnx": "modeldeploy.store.formats.onnx:ONNX_FORMAT",
    "torch": "modeldeploy.store.formats.torch:TORCH_FORMAT",
    "lightgbm": "modeldeploy.store.formats.lightgbm:LIGHTGBM_FORMAT",
}

_registered: dict[str, ModelFormat] = {}
_lock = threading.Lock()
_entry_points_loaded = False


def register(model_format: ModelFormat) -> None:
    """
    Register *model_format* under its ``name``; a later one replaces an earlier one.

    Raises:
        TypeError: *model_format* does not fit :class:`ModelFormat`.

    .. versionadded:: 0.1.0
    """
    if not isinstance(model_format, ModelFormat):
        raise TypeError(f"{model_format!r} is not a ModelFormat (name, filename, dump, load)")
    with _lock:
        _registered[model_format.name] = model_format


def names() -> list[str]:
    """
    Return every registered format name, entry points included, sorted.

    .. versionadded:: 0.1.0
    """
    _load_entry_points()
    return sorted({*_BUILTINS, *_registered})


def get(name: str) -> ModelFormat:
    """
    Return the format registered under *name*.

    Raises:
        ModelLoadError: No format has that name.

    .. versionadded:: 0.1.0
    """
    found = _registered.get(name)
    if found is None:
        _load_entry_points()
        found = _registered.get(name)
    if found is None and name in _BUILTINS:
        module_name, _, attribute = _BUILTINS[name].partition(":")
        found = getattr(importlib.import_module(module_name), attribute)
        with _lock:
            found = _registered.setdefault(name, found)
    if found is None:
        raise ModelLoadError(f"unknown model format {name!r}; known: {', '.join(names())}")
    return found


def require(module: str, extra: str, format_name: str) -> ModuleType:
    """
    Import *module* for a format, or raise ModelLoadError naming the extra to install.

    .. versionadded:: 0.1.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"the {format_name} format needs {module}: pip install 'modeldeploy[{extra}]'"
        ) from exc


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        _register_entry_point(entry_point)


def _register_entry_point(entry_point: Any) -> None:
    try:
        register(entry_point.load())
    except Exception:  # one broken plugin must not hide the others
        logger.exception("model format entry point %r failed to load", entry_point.name)
