"""
Serializer backends and the registry that finds them by name or media type.

>>> from modeldeploy import serializers
>>> serializers.get("msgpack").media_type
'application/msgpack'
>>> serializers.get("application/json").name
'json'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..interfaces import Serializer
from ..negotiation import registry

if TYPE_CHECKING:
    from .json import JSON
    from .msgpack import MsgPack
    from .pickle import Pickle
    from .protobuf import Protobuf
    from .xml import XML

__all__ = ["JSON", "XML", "MsgPack", "Pickle", "Protobuf", "get", "names", "register"]


def get(key: str, **options: Any) -> Serializer:
    """
    Return a new serializer for a name (``"msgpack"``) or a media type.

    Args:
        key: A registered name or any media type a backend reads; parameters
            such as ``charset`` are ignored.
        **options: Passed to the backend's constructor (``max_size=...``).

    Raises:
        UnsupportedMediaTypeError: Nothing is registered under *key*.

    .. versionadded:: 0.1.0
    """
    return registry.get(key, **options)


def names() -> list[str]:
    """Return every registered serializer name, entry points included, sorted."""
    return registry.names()


register = registry.register


_BACKENDS = {
    "JSON": "json",
    "MsgPack": "msgpack",
    "Pickle": "pickle",
    "Protobuf": "protobuf",
    "XML": "xml",
}


def __getattr__(name: str) -> Any:
    # a backend is imported when first used, so its dependency (defusedxml,
    # google.protobuf) costs nothing to applications that never touch it
    if name in _BACKENDS:
        return registry.factory(_BACKENDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
