"""
JSON serializer: orjson when it is installed, the standard library otherwise.

Both engines give the same results: the same values encode, the same values are
refused, and the same bytes decode to equal values. orjson is only faster. The
data model, the NaN policy and the typed tensor form are described on the
docs page ``docs/serializers/json.md`` and in :class:`JSON`.
"""

from __future__ import annotations

import enum
import json
import math
import re
import uuid
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Literal

from modeldeploy.errors import DecodeError, EncodeError, PayloadTooLargeError
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES

from ._base import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, check_size, numpy_or_none

try:
    import orjson
except ImportError:  # pragma: no cover - the test venv has orjson; tests force the stdlib path
    orjson = None  # type: ignore[assignment]

# datetimes and dataclasses go to our default hook, which refuses them as the stdlib path does
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS if orjson is not None else 0
)
# only for float16/float32 arrays and scalars: applied to every value, orjson would
# write datetime64 arrays as strings and refuse non-native ones instead of calling default
_ORJSON_NUMPY = orjson.OPT_SERIALIZE_NUMPY if orjson is not None else 0

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "JSON",
    "MAX_SUPPORTED_DEPTH",
    "MEMORY_FACTOR",
    "MIN_MEMORY",
    "TENSOR_DTYPES",
    "TENSOR_KEY",
]

INT_MIN = -(2**63)
"""The smallest int :class:`JSON` encodes (the int64 minimum)."""

INT_MAX = 2**64 - 1
"""The largest int :class:`JSON` encodes (the uint64 maximum)."""

MAX_SUPPORTED_DEPTH = 200
"""The largest ``max_depth`` accepted; orjson refuses to encode past 254 levels."""

MEMORY_FACTOR = 4
"""The default ``max_memory`` of :class:`JSON`, as a multiple of its ``max_size``."""

MIN_MEMORY = 16 * 1024 * 1024
"""The smallest default ``max_memory``: a small body limit needs no tighter bound."""

TENSOR_KEY = "__tensor__"
"""The reserved key of the typed tensor object (``typed_arrays=True``)."""

TENSOR_DTYPES = frozenset(
    [
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    ]
)  # fmt: skip
"""NumPy dtype names the typed tensor object carries exactly."""

# a JSON string, or an unterminated one running to the end: it always matches
# where it starts, so stripping strings from hostile input stays linear
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_OPENERS = bytes(b for b in range(256) if b not in b"[{")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_SCAN_CHUNK = 1 << 16
# from this many elements orjson writes a numeric array faster than its tolist()
_ARRAY_DIRECT = 256
# a number the plain stdlib parse would read differently from orjson: an int
# outside 64 bits or a literal that overflows a double
_WIDE_NUMBER = re.compile(rb"[0-9]{19}|[eE][+-]?[0-9]{3}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# the plain key, or any \u escape (which could spell the key another way): only then
# is the decoded value walked for tensor objects
_TENSOR_MARK = re.compile(rb'"__tensor__"|\\u')
_TENSOR_FIELDS = frozenset(["dtype", "shape", "data"])
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Bytes a decoded value takes at most, counted from the bytes that open one (CPython
# 3.11, orjson and the stdlib, lists' growth included; tests/reliability/test_memory.py
# and test_fuzz.py check the bound): an array item or an object member (one "," or ":"),
# an array or object (one "[" or "{"), a string (two '"'), an escape (one "\\": orjson
# caches no escaped key), and each byte of the text: orjson's parser allocates about 12
# bytes per byte whatever the text holds, and code points take up to twice their bytes.
_ITEM_COST = 96
_CONTAINER_COST = 128
_QUOTE_COST = 64  # per '"', and per backslash
_BYTE_COST = 16
_BASE_COST = 16 * 1024  # the parser's own buffers (orjson takes 4 KiB for any text)
_MAX_COST = max(_ITEM_COST, _CONTAINER_COST, _QUOTE_COST) + _BYTE_COST  # of any one byte
_COUNT_CHUNK = 1 << 20


def _decoded_size(data: bytes | memoryview, limit: int) -> int:
    """Return an upper bound of the memory *data* decodes into, or stop once past *limit*."""
    size = _BYTE_COST * len(data) + _BASE_COST
    for start in range(0, len(data), _COUNT_CHUNK):
        if isinstance(data, memoryview):
            chunk = data[start : start + _COUNT_CHUNK].tobytes()
            window: tuple[int, ...] = ()
        else:
            chunk, window = data, (start, start + _COUNT_CHUNK)
        size += (
            (chunk.count(b",", *window) + chunk.count(b":", *window)) * _ITEM_COST
            + (chunk.count(b"[", *window) + chunk.count(b"{", *window)) * _CONTAINER_COST
            + (chunk.count(b'"', *window) + chunk.count(b"\\", *window)) * _QUOTE_COST
        )
        if size > limit:
            break
    return size


def check_memory(data: bytes | memoryview, max_memory: int, what: str = "JSON body") -> None:
    """
    Refuse a JSON text that could decode into more than *max_memory* bytes.

    Free under ``max_memory / 144`` bytes; over it, a few C-speed passes over *data*.

    Raises:
        PayloadTooLargeError: *data* could decode into more than *max_memory* bytes.
    """
    if len(data) * _MAX_COST >= max_memory and _decoded_size(data, max_memory) > max_memory:
        raise PayloadTooLargeError(
            f"{what} of {len(data)} bytes could decode into more than the "
            f"{max_memory} bytes allowed (max_memory)"
        )


def default_max_memory(max_size: int) -> int:
    """The memory a JSON text under *max_size* bytes may decode into, by default."""
    return max(MEMORY_FACTOR * max_size, MIN_MEMORY)


def _byte_view(data: bytes | memoryview) -> bytes | memoryview:
    """Return *data* as bytes or a flat, contiguous view of unsigned bytes."""
    if isinstance(data, memoryview):
        if not data.c_contiguous:
            return data.tobytes()
        if data.format != "B" or data.ndim != 1:
            return data.cast("B")
    return data


def _more_openers(data: bytes | memoryview, limit: int) -> bool:
    """Return whether *data* has more than *limit* ``[`` and ``{`` bytes, strings included."""
    if isinstance(data, memoryview):
        # a memoryview has no find(); slices keep the copy small and bounded
        count = sum(
            len(data[i : i + _SCAN_CHUNK].tobytes().translate(None, _NOT_OPENERS))
            for i in range(0, len(data), _SCAN_CHUNK)
        )
        return count > limit
    # find() of one byte is memchr, several times faster than count() or translate()
    count = 0
    for opener in b"[{":
        index = data.find(opener)
        while index != -1:
            count += 1
            if count > limit:
                return True
            index = data.find(opener, index + 1)
    return False


def _nesting(data: bytes | memoryview) -> int:
    """Return how deep the arrays and objects of a JSON text nest; strings are skipped."""
    steps = _STRING.sub(b"", data).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def _probe_default(value: Any) -> Any:
    """:data:`_PROBE`'s hook: what orjson wrote itself, reduced to what may hold a float."""
    np = numpy_or_none()
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        kind = value.dtype.kind
        if kind == "f" and not np.isfinite(value).all():
            raise ValueError("a non-finite NumPy float")
        return value.tolist() if kind == "O" else None
    if isinstance(value, enum.Enum):
        return value.value
    return None  # a UUID: no float in it


# The C encoder of the standard library, run only to find a non-finite float: it raises
# ValueError on one. 1.5 us for a small dict where the stdlib path's walk took 6.
_PROBE = json.JSONEncoder(
    allow_nan=False, check_circular=False, ensure_ascii=False, default=_probe_default
)


def _non_finite(value: Any) -> bool:
    """Whether *value*, which orjson encoded, holds NaN or an infinity (orjson wrote null)."""
    try:
        _PROBE.encode(value)
    except Exception:  # ValueError; anything else: the stdlib path decides, as it used to
        return True
    return False


class _NoArray:
    """The array type when NumPy is not installed: nothing is of this type."""


def _array_type() -> type:
    """``numpy.ndarray``, or a type no value has when NumPy is not installed."""
    np = numpy_or_none()
    return _NoArray if np is None else np.ndarray


def _too_deep(data: bytes | memoryview, max_depth: int) -> bool:
    """Return whether the JSON text *data* nests deeper than *max_depth*, in C-speed passes."""
    # depth d needs at least 2d bytes, and at least d openers
    return (
        len(data) > 2 * max_depth and _more_openers(data, max_depth) and _nesting(data) > max_depth
    )


class JSON:
    """
    JSON (RFC 8259) through orjson when installed, else the standard library.

    Data model (``loads(dumps(x)) == x``): ``None``, ``bool``, ``int`` in
    ``[INT_MIN, INT_MAX]`` (int64 and uint64), ``float``, ``str`` (no lone
    surrogates), ``list`` and ``dict`` with ``str`` keys, nested at most
    *max_depth* deep. Encoded and decoded as something else: a ``tuple`` as a
    list; a NumPy scalar as the Python number of ``.item()``; a NumPy array as
    ``array.tolist()``, or with ``typed_arrays=True`` as the tensor object
    ``{"__tensor__": {"dtype": "float32", "shape": [2, 3], "data": [...]}}`` that
    decodes to an equal array of that dtype and shape; an ``Enum`` member as
    its value; a ``uuid.UUID`` as its string. float32 and float16 values (in
    arrays, scalars and tensor objects; a ``numpy.ndarray`` subclass is its
    ``tolist()``) are written in the shortest digits that read back as the same
    float32, as orjson's ``OPT_SERIALIZE_NUMPY`` and the V2 codec write them
    (``np.float32(0.1)`` as ``0.1``, not ``0.10000000149011612``; float16
    through float32: ``np.float16(0.1)`` as ``0.099975586``): they decode as the
    Python float of those digits, and ``np.float32`` (or ``np.float16``) of it
    is the value written, bit for bit. Both engines write the same digits.
    Anything else (``set``, ``bytes``, ``datetime``, a dict with non-``str``
    keys, an int outside the range, a string with a lone surrogate) raises
    :class:`~modeldeploy.errors.EncodeError`.

    Decoding reads UTF-8 only. An integer literal outside 64 bits decodes as
    the nearest float, as orjson does.

    Args:
        max_size: Largest body ``loads`` accepts, in bytes.
        max_depth: Deepest nesting of arrays and objects, for ``loads`` and
            ``dumps`` alike (at most :data:`MAX_SUPPORTED_DEPTH`).
        allow_nan: ``False`` (default) keeps to RFC 8259: encoding NaN or an
            infinity raises EncodeError, decoding the ``NaN``, ``Infinity`` or
            ``-Infinity`` tokens (or a number that overflows a double) raises
            DecodeError. ``True`` writes and reads those tokens, as Python's
            ``json`` module does.
        typed_arrays: Encode NumPy arrays as typed tensor objects and decode
            those objects back into arrays. The key ``__tensor__`` is then
            reserved: a dict holding it cannot be encoded, and a decoded
            object holding it must be a valid tensor object.
        backend: ``"auto"`` uses orjson when it is installed; ``"orjson"``
            requires it; ``"stdlib"`` uses the ``json`` module.
        max_memory: Most memory, in bytes, a body may decode into; a body that
            could take more is refused with PayloadTooLargeError before it is
            decoded. ``None`` (default) is :data:`MEMORY_FACTOR` times
            *max_size*, and at least :data:`MIN_MEMORY`. The check counts
            the body's commas, colons, brackets, braces, quotes and
            backslashes (an upper bound of its values), and only for bodies
            over ``max_memory / 144`` bytes: small bodies pay nothing. Without
            it, a body of ``[],[],...`` decodes into 30 times its size.

    Raises:
        ValueError: *max_depth* is out of range, *max_memory* is not positive,
            or *backend* is unknown.
        ModuleNotFoundError: ``backend="orjson"`` and orjson is not installed.

    .. versionadded:: 0.1.0
    """

    name = "json"
    media_types: tuple[str, ...] = BUILTIN_MEDIA_TYPES["json"]
    media_type = media_types[0]

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        allow_nan: bool = False,
        typed_arrays: bool = False,
        backend: Literal["auto", "orjson", "stdlib"] = "auto",
        max_memory: int | None = None,
    ) -> None:
        if max_memory is not None and max_memory <= 0:
            raise ValueError(f"max_memory must be > 0 or None, got {max_memory}")
        if not 1 <= max_depth <= MAX_SUPPORTED_DEPTH:
            raise ValueError(f"max_depth must be between 1 and {MAX_SUPPORTED_DEPTH}")
        if backend not in ("auto", "orjson", "stdlib"):
            raise ValueError(f"unknown JSON backend {backend!r}")
        if backend == "orjson" and orjson is None:  # pragma: no cover - orjson is installed
            raise ModuleNotFoundError("backend='orjson' needs orjson: pip install orjson")
        self.max_size = max_size
        self.max_memory = default_max_memory(max_size) if max_memory is None else max_memory
        self.max_depth = max_depth
        self.allow_nan = allow_nan
        self.typed_arrays = typed_arrays
        self.backend: Literal["orjson", "stdlib"] = (
            "orjson" if backend != "stdlib" and orjson is not None else "stdlib"
        )
        # numpy.ndarray, looked up at the first dumps (0.05 us a call saved after it)
        self._array_type: type | None = None
        self._encoder = json.JSONEncoder(
            ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":"), check_circular=False
        )
        self._decoder = json.JSONDecoder(parse_constant=self._constant)
        # the hooks cost a Python call per number, so only bodies that need them pay
        self._wide_decoder = json.JSONDecoder(
            parse_constant=self._constant, parse_int=self._int, parse_float=self._float
        )

    def __repr__(self) -> str:
        return (
            f"JSON(max_size={self.max_size}, max_memory={self.max_memory}, "
            f"max_depth={self.max_depth}, "
            f"allow_nan={self.allow_nan}, typed_arrays={self.typed_arrays}, "
            f"backend={self.backend!r})"
        )

    # -- encoding -----------------------------------------------------------------

    def dumps(self, obj: Any, /) -> bytes:
        """
        Encode *obj* as compact UTF-8 JSON.

        Raises:
            EncodeError: *obj* is outside the data model, nests deeper than
                ``max_depth``, or holds NaN or an infinity while
                ``allow_nan`` is false.
        """
        if self.backend == "stdlib":
            return self._dumps_stdlib(obj)
        assert orjson is not None
        typed = self.typed_arrays
        array_type = self._array_type
        if array_type is None:
            array_type = self._array_type = _array_type()
        if type(obj) is array_type and not typed:
            out = self._dumps_array(obj)
            if out is not None:
                return out
        count = [0]
        default = self._counting_default(count) if typed else self._convert
        try:
            out = orjson.dumps(obj, default=default, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise EncodeError(f"value cannot be encoded as JSON: {_reason(exc)}") from exc
        # memchr finds no "l" in a body of numbers long before "null" would be searched
        if out.find(b"l") != -1 and out.find(b"null") != -1 and _non_finite(obj):
            # orjson writes NaN and infinities as null: the stdlib path writes or
            # refuses them, as allow_nan says
            return self._dumps_stdlib(obj)
        if typed and out.count(b'"__tensor__":') != count[0]:
            raise EncodeError(f"the key {TENSOR_KEY!r} is reserved when typed_arrays=True")
        # depth d takes 2d bytes: the call is skipped for a short text
        if len(out) > 2 * self.max_depth and _too_deep(out, self.max_depth):
            raise EncodeError(f"value nests deeper than {self.max_depth} levels")
        return out

    def _dumps_array(self, array: Any) -> bytes | None:
        """A numeric array as the general path writes it, with no hook; None if not.

        A model's output is most often one array: handing orjson the array
        itself (float16 and float32 always, in float32's shortest digits;
        float64, ints and bools when large) or its list spares a ``default``
        call and the nesting scans.
        """
        dtype = array.dtype
        kind = dtype.kind
        assert orjson is not None
        if array.ndim > self.max_depth:
            return None
        if kind == "f" and dtype.itemsize < 8:
            # float16/float32: orjson writes float32's shortest digits of a plain
            # C-contiguous native array; _short_float_json makes one of any other
            if array.ndim == 0 or not (array.flags.c_contiguous and dtype.isnative):
                out = _short_float_json(array)
            else:
                out = orjson.dumps(array, option=_ORJSON_NUMPY)
            if out.find(b"l") != -1 and out.find(b"null") != -1:
                return self._dumps_stdlib(array)  # NaN or an infinity: the policy decides
            return out
        # native ints, bools and float64, what tolist() makes Python numbers of and
        # orjson writes (a long double or a big-endian array is not)
        if kind not in "biuf" or dtype.itemsize > 8 or not dtype.isnative:
            return None
        try:
            if array.size >= _ARRAY_DIRECT and array.flags.c_contiguous:
                out = orjson.dumps(array, option=_ORJSON_NUMPY)
            else:
                out = orjson.dumps(array.tolist())
        except (TypeError, orjson.JSONEncodeError):
            return None  # the general path decides, and says why
        if out.find(b"l") != -1 and out.find(b"null") != -1:
            return self._dumps_stdlib(array)  # NaN or an infinity: the policy decides
        return out

    def _dumps_stdlib(self, obj: Any) -> bytes:
        plain = self._plain(obj, 0)
        try:
            text = self._encoder.encode(plain)
        except ValueError as exc:
            raise EncodeError(
                "NaN and Infinity are not valid JSON (the serializer has allow_nan=False)"
            ) from exc
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EncodeError("a string holds a lone surrogate, which UTF-8 cannot carry") from exc

    def _plain(self, obj: Any, depth: int) -> Any:
        """Return *obj* as plain JSON values, checked as orjson would check them."""
        cls = type(obj)
        if cls is str or cls is float or cls is bool or obj is None:
            return obj
        if cls is int:
            if not INT_MIN <= obj <= INT_MAX:
                raise EncodeError("int is outside the 64-bit range JSON carries here")
            return obj
        if isinstance(obj, (list, tuple)):
            depth += 1
            if depth > self.max_depth:
                raise EncodeError(f"value nests deeper than {self.max_depth} levels")
            return [self._plain(item, depth) for item in obj]
        if isinstance(obj, dict):
            depth += 1
            if depth > self.max_depth:
                raise EncodeError(f"value nests deeper than {self.max_depth} levels")
            out = {}
            for key, value in obj.items():
                if type(key) is not str:
                    raise EncodeError("JSON object keys must be str")
                if key == TENSOR_KEY and self.typed_arrays:
                    raise EncodeError(f"the key {TENSOR_KEY!r} is reserved when typed_arrays=True")
                out[key] = self._plain(value, depth)
            return out
        if isinstance(obj, enum.Enum):
            return self._plain(obj.value, depth)
        if isinstance(obj, str):
            return str.__str__(obj)
        if isinstance(obj, int) and not isinstance(obj, bool):
            return self._plain(int(obj), depth)
        if isinstance(obj, uuid.UUID):
            return str(obj)
        np = numpy_or_none()
        if np is not None and isinstance(obj, np.ndarray):
            if self.typed_arrays:
                if depth + 1 > self.max_depth:
                    raise EncodeError(f"value nests deeper than {self.max_depth} levels")
                tensor = self._tensor(obj, _short_float_values)
                return {TENSOR_KEY: self._plain(tensor, depth + 1)}
            if type(obj) is np.ndarray and _is_short_float(obj.dtype):
                return self._plain(_short_float_values(obj), depth)
        elif np is not None and isinstance(obj, np.generic) and _is_short_float(obj.dtype):
            return _short_float_values(obj)
        return self._plain(self._convert(obj), depth)

    def _convert(self, obj: Any) -> Any:
        """
        Turn a value JSON has no type for into one it has, or raise EncodeError.

        It is orjson's ``default`` hook too: orjson wraps what it raises in
        JSONEncodeError, which dumps() maps. Only orjson gets here with NumPy
        arrays and float16/float32 scalars (``_plain`` takes them first), and
        gets float16/float32 values as orjson's own text of them.
        """
        np = numpy_or_none()
        if np is not None:
            if isinstance(obj, np.ndarray):
                if self.typed_arrays:
                    return {TENSOR_KEY: self._tensor(obj, _short_float_fragment)}
                if type(obj) is np.ndarray and _is_short_float(obj.dtype):
                    return _short_float_fragment(obj)
                return obj.tolist()
            if isinstance(obj, np.generic):
                if _is_short_float(obj.dtype):
                    return _short_float_fragment(obj)
                item = obj.item()
                if isinstance(item, np.generic):  # a long double is its own item()
                    raise EncodeError(f"NumPy {obj.dtype.name} values have no JSON form")
                return item
        if isinstance(obj, tuple):
            return list(obj)
        if isinstance(obj, float):
            return float(obj)
        raise EncodeError(f"{type(obj).__name__} is not in the JSON data model")

    def _counting_default(self, count: list[int]) -> Callable[[Any], Any]:
        """Return a default hook that counts the tensor objects it writes."""
        np = numpy_or_none()

        def default(obj: Any) -> Any:
            if np is not None and isinstance(obj, np.ndarray):
                count[0] += 1
            return self._convert(obj)

        return default

    def _tensor(self, array: Any, short_floats: Callable[[Any], Any]) -> dict[str, Any]:
        """The fields of *array*'s tensor object; float16/float32 data by *short_floats*."""
        name = array.dtype.name
        if name not in TENSOR_DTYPES:
            raise EncodeError(f"arrays of dtype {name} have no JSON tensor form")
        flat = array.reshape(-1)
        data = short_floats(flat) if _is_short_float(array.dtype) else flat.tolist()
        return {"dtype": name, "shape": list(array.shape), "data": data}

    # -- decoding -----------------------------------------------------------------

    def loads(self, data: bytes | memoryview, /) -> Any:
        """
        Decode one UTF-8 JSON text; a memoryview is parsed in place by orjson.

        Raises:
            PayloadTooLargeError: *data* is over ``max_size`` bytes, or could
                decode into more than ``max_memory`` bytes.
            DecodeError: *data* is not valid UTF-8 JSON, nests deeper than
                ``max_depth``, holds a non-finite number while ``allow_nan`` is
                false, or (``typed_arrays``) holds a malformed tensor object.
        """
        if type(data) is bytes:
            size = len(data)
            if size > self.max_size:
                check_size(data, self.max_size, "JSON")  # raises
        else:
            check_size(data, self.max_size, "JSON")
            data = _byte_view(data)
            size = len(data)
        # each check's threshold inlined: a small body calls neither (0.15 us)
        if size * _MAX_COST >= self.max_memory:
            check_memory(data, self.max_memory)
        if size > 2 * self.max_depth and _too_deep(data, self.max_depth):
            raise DecodeError(f"JSON body nests deeper than {self.max_depth} levels")
        if self.backend == "stdlib":
            value = self._loads_stdlib(data)
        else:
            assert orjson is not None
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                if not self.allow_nan:
                    raise DecodeError(f"body is not valid JSON: {_reason(exc)}") from exc
                # orjson reads no NaN or Infinity token; the stdlib path does
                value = self._loads_stdlib(data)
        if self.typed_arrays and _TENSOR_MARK.search(data):
            value = self._revive(value)
        return value

    def _loads_stdlib(self, data: bytes | memoryview) -> Any:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("JSON body is not valid UTF-8") from exc
        decoder = self._wide_decoder if _WIDE_NUMBER.search(data) else self._decoder
        try:
            value = decoder.decode(text)
        except DecodeError:
            raise
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"body is not valid JSON: {_reason(exc)}") from exc
        if _SURROGATE_ESCAPE.search(text):
            try:
                json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DecodeError("JSON string holds a lone surrogate escape") from exc
        return value

    def _constant(self, token: str) -> float:
        if not self.allow_nan:
            raise DecodeError(f"{token} is not valid JSON (the serializer has allow_nan=False)")
        return _NON_FINITE[token]

    def _float(self, literal: str) -> float:
        value = float(literal)
        if math.isinf(value) and not self.allow_nan:
            raise DecodeError("JSON number is too large for a double")
        return value

    def _int(self, literal: str) -> int | float:
        # like orjson: an integer beyond 64 bits reads as the nearest double
        if len(literal) <= 20:
            value = int(literal)
            if INT_MIN <= value <= INT_MAX:
                return value
        return self._float(literal)

    def _revive(self, value: Any) -> Any:
        """Replace every tensor object inside *value* (freshly decoded) by its array."""
        if type(value) is dict:
            if TENSOR_KEY in value:
                return self._array(value)
            for key, item in value.items():
                if type(item) is dict or type(item) is list:
                    value[key] = self._revive(item)
        elif type(value) is list:
            for index, item in enumerate(value):
                if type(item) is dict or type(item) is list:
                    value[index] = self._revive(item)
        return value

    def _array(self, obj: dict[str, Any]) -> Any:
        np = numpy_or_none()
        if np is None:  # pragma: no cover - the test venv has numpy
            raise DecodeError("JSON tensor objects need NumPy, which is not installed")
        spec = obj[TENSOR_KEY]
        if len(obj) != 1 or type(spec) is not dict or spec.keys() != _TENSOR_FIELDS:
            raise DecodeError('a tensor object is {"__tensor__": {"dtype", "shape", "data"}}')
        name, shape, data = spec["dtype"], spec["shape"], spec["data"]
        if type(name) is not str or name not in TENSOR_DTYPES:
            raise DecodeError("tensor dtype is not one JSON tensors carry")
        if (
            type(shape) is not list
            or not all(type(n) is int and n >= 0 for n in shape)
            or type(data) is not list
            or math.prod(shape) != len(data)
        ):
            raise DecodeError("tensor shape does not match its data")
        dtype = np.dtype(name)
        try:
            guess = np.asarray(data)
            if guess.ndim != 1:
                raise DecodeError("tensor data must be a flat list")
            found = guess.dtype.kind if data else dtype.kind
            if dtype.kind in "iu" and found == "f" and all(type(x) is int for x in data):
                found = "u"  # ints beyond int64 beside smaller ones make NumPy guess float64
            if found not in {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[dtype.kind]:
                raise DecodeError(f"tensor data do not fit dtype {name}")
            if dtype.kind != "b" and bool in set(map(type, data)):
                # NumPy would read true as 1 beside numbers; all-bool data is refused above
                raise DecodeError(f"tensor data do not fit dtype {name}")
            with np.errstate(over="raise"):
                return np.array(data, dtype=dtype).reshape(shape)
        except DecodeError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            raise DecodeError(f"tensor data do not fit dtype {name} and shape") from exc


def _is_short_float(dtype: Any) -> bool:
    """Whether *dtype* is float16 or float32 (either byte order): JSON writes float32 digits."""
    return bool(dtype.kind == "f" and dtype.itemsize < 8)


def _short_float_json(value: Any) -> bytes:
    """
    Return orjson's text of a float16/float32 array or scalar: float32's shortest digits.

    orjson writes a float16 value through float32 (``0.099975586`` for float16
    0.1), NaN and infinities as ``null``. It takes plain, C-contiguous, native
    arrays of at least one dimension; other arrays are copied to one first.
    """
    assert orjson is not None
    np = numpy_or_none()
    assert np is not None
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            value = value[()]
        elif not (type(value) is np.ndarray and value.flags.c_contiguous and value.dtype.isnative):
            value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
    return orjson.dumps(value, option=_ORJSON_NUMPY)


def _short_float_fragment(value: Any) -> Any:
    """A float16/float32 array or scalar as an orjson Fragment of its text."""
    assert orjson is not None
    return orjson.Fragment(_short_float_json(value))


def _short_float_values(value: Any) -> Any:
    """
    Return a float16/float32 array or scalar as Python floats in float32's digits.

    The floats nest as ``tolist()`` nests them, and ``repr`` writes each in
    float32's shortest digits, the digits orjson writes: NumPy's float32
    ``str`` is that shortest text, and parsed as a double it is the double
    whose ``repr`` is those digits. NaN and infinities stay themselves.
    """
    np = numpy_or_none()
    assert np is not None
    return np.asarray(value, dtype=np.float32).astype(str).astype(np.float64).tolist()


def _reason(exc: BaseException) -> str:
    """Return the first line of a parser's message, which names no server internals."""
    return str(exc).split("\n", 1)[0]
