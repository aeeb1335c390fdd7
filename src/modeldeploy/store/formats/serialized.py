"""
Formats made of modeldeploy's own serializers: json, msgpack, pickle, protobuf, xml.

The artifact is the serializer's encoding of the model value. For the data
formats the value is data (weights, a lookup table), and the version names a
``factory`` that builds the model from it. ``pickle`` holds any picklable
object: untrusted, it goes through the restricted loader of
:class:`~modeldeploy.serializers.Pickle`, which reads data (NumPy arrays
included) and refuses to run code; trusted, through the full ``pickle``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import Any, Final

from ... import serializers

__all__ = [
    "JSON_FORMAT",
    "MSGPACK_FORMAT",
    "PICKLE_FORMAT",
    "PROTOBUF_FORMAT",
    "XML_FORMAT",
    "SerializedFormat",
]


class SerializedFormat:
    """
    A model format backed by a registered serializer.

    Args:
        serializer: The serializer's registry name (``"msgpack"``).
        extension: The artifact's file extension, without the dot.

    .. versionadded:: 0.1.0
    """

    def __init__(self, serializer: str, extension: str) -> None:
        self.name = serializer
        self.filename = f"model.{extension}"
        # a restricted pickle runs no code; only the trusted load does
        self.pickled = False

    def __repr__(self) -> str:
        return f"SerializedFormat({self.name!r})"

    def dump(self, model: Any, /) -> bytes:
        """Encode *model* with the serializer (EncodeError when it cannot)."""
        return serializers.get(self.name).dumps(model)

    def load(self, data: bytes, /, *, trusted: bool) -> Any:
        """Decode *data*; no size limit applies, the manifest's hash already vouched for it."""
        options: dict[str, Any] = {"max_size": len(data)}
        if self.name == "pickle":
            options["trusted"] = trusted
        return serializers.get(self.name, **options).loads(data)


JSON_FORMAT: Final = SerializedFormat("json", "json")
MSGPACK_FORMAT: Final = SerializedFormat("msgpack", "msgpack")
PICKLE_FORMAT: Final = SerializedFormat("pickle", "pkl")
PROTOBUF_FORMAT: Final = SerializedFormat("protobuf", "pb")
XML_FORMAT: Final = SerializedFormat("xml", "xml")
