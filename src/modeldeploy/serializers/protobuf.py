"""
Protobuf serializer: values and NumPy tensors as ``modeldeploy.v1.Value`` messages.

The schema is ``proto/modeldeploy/v1/value.proto``; a body is one serialized
``Value``. Tensors carry KServe V2 datatype names and little-endian, C-order
raw bytes, the layout of V2's ``raw_input_contents``.

Data model (what round-trips exactly):

* ``None``, ``bool``, ``str``, ``bytes``;
* ``int`` from ``-2**63`` to ``2**64 - 1`` (``int_value`` up to ``2**63 - 1``,
  ``uint_value`` above);
* ``float``, NaN and infinities included (IEEE double);
* ``list`` and ``dict`` with ``str`` keys (insertion order kept);
* NumPy arrays of dtype bool, int8-64, uint8-64, float16, float32 and float64,
  any shape (0-d and empty included): dtype and shape come back exactly, as a
  read-only array.

Also accepted by ``dumps``, decoded as their plain counterpart: tuples (as
lists), ``bytearray`` and ``memoryview`` (as bytes), NumPy scalars (as
``bool``, ``int`` or ``float``), big-endian or non-contiguous arrays (as
little-endian C-order arrays).
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.message import DecodeError as _WireError

from modeldeploy._proto import value_pb2
from modeldeploy.errors import DecodeError, EncodeError
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES

from ._base import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, check_size, numpy_or_none

__all__ = ["PARSER_DEPTH_LIMIT", "Protobuf"]

PARSER_DEPTH_LIMIT = 100
"""
Nested messages the protobuf parser reads (upb, C++ and pure-Python alike).

Each list level costs two messages (``ListValue``, ``Value``) and each map
level three (``MapValue``, ``MapEntry``, ``Value``), so lists nest at most 50
deep and maps 33, whatever ``max_depth`` says.

.. versionadded:: 0.1.0
"""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

# KServe V2 datatype name -> little-endian NumPy dtype
_DTYPE_OF_DATATYPE = {
    "BOOL": "|b1",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
# (dtype.kind, dtype.itemsize) -> V2 datatype name; byte order is fixed on encode
_DATATYPE_OF_KIND = {(dtype[1], int(dtype[2])): name for name, dtype in _DTYPE_OF_DATATYPE.items()}
# Value members whose Python value is the decoded value as it stands
_SCALAR_MEMBERS = frozenset(
    ["bool_value", "int_value", "uint_value", "double_value", "string_value", "bytes_value"]
)


class Protobuf:
    """
    Serializer for the ``modeldeploy.v1.Value`` protobuf message.

    Args:
        max_size: Bytes ``loads`` accepts; more raises
            :class:`~modeldeploy.errors.PayloadTooLargeError`.
        max_depth: Lists and maps nested deeper than this raise
            :class:`~modeldeploy.errors.DecodeError` in ``loads`` and
            :class:`~modeldeploy.errors.EncodeError` in ``dumps``.
            :data:`PARSER_DEPTH_LIMIT` caps nesting as well.

    ``loads`` copies: the protobuf runtime copies a ``bytes`` field out of the
    body, and arrays are read-only ``np.frombuffer`` views of that copy.

    >>> import numpy as np
    >>> codec = Protobuf()
    >>> codec.loads(codec.dumps({"x": np.arange(3, dtype=np.int32), "k": 5}))
    {'x': array([0, 1, 2], dtype=int32), 'k': 5}

    .. versionadded:: 0.1.0
    """

    name: str = "protobuf"
    media_types: tuple[str, ...] = BUILTIN_MEDIA_TYPES["protobuf"]
    media_type: str = media_types[0]

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        self.max_size = max_size
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return f"Protobuf(max_size={self.max_size}, max_depth={self.max_depth})"

    def dumps(self, obj: Any, /) -> bytes:
        """
        Encode *obj* as a serialized ``Value``.

        Raises:
            EncodeError: *obj* is outside the data model, or nests deeper than
                ``max_depth`` or than the parser on the other side reads.
        """
        message = value_pb2.Value()
        self._encode(obj, message, 0, 0)
        data: bytes = message.SerializeToString()
        return data

    def loads(self, data: bytes | memoryview, /) -> Any:
        """
        Decode a serialized ``Value``.

        Raises:
            PayloadTooLargeError: *data* is over ``max_size`` bytes.
            DecodeError: *data* is not a valid ``Value`` (garbage, truncated,
                no member set, a tensor whose bytes do not fit its shape), or
                nests too deep.
        """
        check_size(data, self.max_size, self.name)
        if isinstance(data, memoryview) and (
            not data.c_contiguous or data.format != "B" or data.ndim != 1
        ):
            data = data.tobytes()  # the parser takes flat bytes only
        message = value_pb2.Value()
        try:
            message.ParseFromString(data)
        except _WireError as exc:
            raise DecodeError(
                "body is not a valid protobuf modeldeploy.v1.Value, or nests too deep"
            ) from exc
        return self._decode(message, 0)

    def _encode(self, obj: Any, out: Any, depth: int, wire_depth: int) -> None:
        # depth counts enclosing lists and maps; wire_depth counts enclosing
        # messages, which is what the receiving parser limits
        if wire_depth > PARSER_DEPTH_LIMIT:
            raise EncodeError("value nests deeper than protobuf parsers read")
        if obj is None:
            out.null_value = value_pb2.NULL_VALUE
        elif isinstance(obj, bool):
            out.bool_value = obj
        elif isinstance(obj, int):
            self._encode_int(int(obj), out)
        elif isinstance(obj, float):
            out.double_value = obj
        elif isinstance(obj, str):
            try:
                out.string_value = obj
            except ValueError as exc:  # lone surrogates are not UTF-8
                raise EncodeError("string is not valid Unicode") from exc
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            out.bytes_value = bytes(obj)
        elif isinstance(obj, (list, tuple)):
            self._check_nesting(depth, wire_depth)
            values = out.list_value.values
            out.list_value.SetInParent()  # an empty list must still be set
            for item in obj:
                self._encode(item, values.add(), depth + 1, wire_depth + 2)
        elif isinstance(obj, dict):
            self._check_nesting(depth, wire_depth)
            entries = out.map_value.entries
            out.map_value.SetInParent()
            for key, item in obj.items():
                if not isinstance(key, str):
                    raise EncodeError("protobuf maps need str keys")
                entry = entries.add()
                try:
                    entry.key = key
                except ValueError as exc:
                    raise EncodeError("map key is not valid Unicode") from exc
                self._encode(item, entry.value, depth + 1, wire_depth + 3)
        else:
            self._encode_numpy(obj, out, wire_depth)

    def _check_nesting(self, depth: int, wire_depth: int) -> None:
        if depth >= self.max_depth:
            raise EncodeError(f"value nests deeper than max_depth={self.max_depth}")
        if wire_depth + 1 > PARSER_DEPTH_LIMIT:
            raise EncodeError("value nests deeper than protobuf parsers read")

    @staticmethod
    def _encode_int(value: int, out: Any) -> None:
        if _INT64_MIN <= value <= _INT64_MAX:
            out.int_value = value
        elif _INT64_MAX < value <= _UINT64_MAX:
            out.uint_value = value
        else:
            raise EncodeError("integer out of the range -2**63 .. 2**64 - 1")

    def _encode_numpy(self, obj: Any, out: Any, wire_depth: int) -> None:
        np = numpy_or_none()
        if np is not None and isinstance(obj, np.generic):
            if isinstance(obj, np.bool_):
                out.bool_value = bool(obj)
                return
            if isinstance(obj, np.integer):
                self._encode_int(int(obj), out)
                return
            if isinstance(obj, np.floating) and obj.dtype.itemsize <= 8:
                out.double_value = float(obj)
                return
        elif (
            np is not None
            and isinstance(obj, np.ndarray)
            and not isinstance(obj, np.ma.MaskedArray)  # the mask would be lost
        ):
            datatype = _DATATYPE_OF_KIND.get((obj.dtype.kind, obj.dtype.itemsize))
            if datatype is None:
                raise EncodeError(f"protobuf tensors cannot hold dtype {obj.dtype.str}")
            if wire_depth + 1 > PARSER_DEPTH_LIMIT:
                raise EncodeError("value nests deeper than protobuf parsers read")
            tensor = out.tensor_value
            tensor.datatype = datatype
            tensor.shape.extend(obj.shape)
            # astype is a no-op on little-endian hosts; tobytes writes C order
            little = obj.astype(obj.dtype.newbyteorder("<"), copy=False)
            tensor.raw_contents = little.tobytes(order="C")
            return
        raise EncodeError(f"protobuf cannot encode a value of type {type(obj).__name__}")

    def _decode(self, message: Any, depth: int) -> Any:
        kind = message.WhichOneof("kind")
        if kind in _SCALAR_MEMBERS:
            return getattr(message, kind)
        if kind == "null_value":
            if message.null_value != value_pb2.NULL_VALUE:
                raise DecodeError("null_value holds an unknown enum number")
            return None
        if kind == "list_value":
            if depth >= self.max_depth:
                raise DecodeError(f"value nests deeper than max_depth={self.max_depth}")
            return [self._decode(item, depth + 1) for item in message.list_value.values]
        if kind == "map_value":
            if depth >= self.max_depth:
                raise DecodeError(f"value nests deeper than max_depth={self.max_depth}")
            result: dict[str, Any] = {}
            for entry in message.map_value.entries:
                if entry.key in result:
                    raise DecodeError("map has a duplicate key")
                result[entry.key] = self._decode(entry.value, depth + 1)
            return result
        if kind == "tensor_value":
            return _decode_tensor(message.tensor_value)
        # no member set: an empty message, or a member this schema does not know
        raise DecodeError("protobuf Value has no known member set")


def _decode_tensor(tensor: Any) -> Any:
    np = numpy_or_none()
    if np is None:  # pragma: no cover - the test venv has numpy
        raise DecodeError("tensor values need numpy installed on the server")
    dtype_str = _DTYPE_OF_DATATYPE.get(tensor.datatype)
    if dtype_str is None:
        raise DecodeError(f"unknown tensor datatype {tensor.datatype[:32]!r}")
    shape = tuple(tensor.shape)
    if any(size < 0 for size in shape):
        raise DecodeError("tensor shape has a negative dimension")
    dtype = np.dtype(dtype_str)
    raw = tensor.raw_contents
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise DecodeError("tensor raw_contents length does not match its shape and datatype")
    if dtype.kind == "b" and raw.translate(None, b"\x00\x01"):  # deletes 0s and 1s
        raise DecodeError("BOOL tensor holds a byte other than 0 or 1")
    try:
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    except ValueError as exc:  # over 64 dimensions, or too big a shape of size 0
        raise DecodeError("tensor shape is not valid") from exc
