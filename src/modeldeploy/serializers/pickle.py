"""
pickle (protocol 5) with out-of-band NumPy buffers and a restricted loader.

``dumps`` writes array bytes out of band and appends them to the pickle stream
in a small frame, so ``loads`` hands ``pickle`` memoryview slices of its input
and arrays decode without a copy. A body without arrays is a plain pickle.

``Pickle()`` refuses every global outside a short allow-list, every opcode that
instantiates arbitrary classes, and NumPy dtypes whose pickled state was
tampered with. ``Pickle(trusted=True)`` is the full, unsafe ``pickle``.
The format and the security model are described in ``docs/serializers/pickle.md``.
"""

from __future__ import annotations

import io
import logging
import pickle
import pickletools
import struct
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any, ClassVar

from modeldeploy.errors import (
    DecodeError,
    EncodeError,
    ModelDeployError,
    UntrustedPayloadError,
)
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES

from ._base import (
    ALIGNMENT,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_SIZE,
    MAX_DTYPE_LEN,
    aligned,
    byte_view,
    check_code_points,
    check_size,
    is_plain_dtype,
    numpy_or_none,
)

logger = logging.getLogger("modeldeploy")

__all__ = ["ALIGNMENT", "MAGIC", "Pickle"]

MAGIC = b"\x00MDP"
"""First bytes of a framed body; no pickle starts with a zero byte."""

PROTOCOL = 5

_HEAD = struct.Struct("<4sIQ")  # magic, buffer count, pickle stream length
_SPAN = struct.Struct("<QQ")  # one buffer: absolute offset, length
_SCAN_CACHE_LIMIT = 4096  # bytes; 256 cached streams stay under 1 MiB


# ---------------------------------------------------------------- dumps


class _Pickler(pickle.Pickler):
    """Sends every plain array out of band as C- or F-ordered bytes."""

    def __init__(self, file: io.BytesIO, buffers: list[pickle.PickleBuffer], np: Any) -> None:
        super().__init__(file, protocol=PROTOCOL, buffer_callback=buffers.append)
        self._np = np

    def reducer_override(self, obj: Any) -> Any:
        np = self._np
        if np is None or not isinstance(obj, np.ndarray) or not is_plain_dtype(obj.dtype):
            return NotImplemented
        # numpy pickles non-contiguous, datetime64 and subclassed arrays in
        # band through _reconstruct, which the restricted loader refuses
        order = "C"
        if obj.flags.c_contiguous:
            flat = obj.reshape(-1)
        elif obj.flags.f_contiguous:
            order, flat = "F", obj.reshape(-1, order="F")
        else:
            flat = obj.copy(order="C").reshape(-1)
        raw = pickle.PickleBuffer(flat.view(np.ndarray).view(np.uint8))
        return _frombuffer_function(), (raw, obj.dtype, obj.shape, order)


@cache
def _frombuffer_function() -> Any:
    """Numpy's own ``_frombuffer``, so trusted peers load our arrays with plain pickle."""
    np = numpy_or_none()
    assert np is not None  # only called with an array in hand
    return np.zeros(1).__reduce_ex__(PROTOCOL)[0]


def _frame(stream: bytes, buffers: list[pickle.PickleBuffer]) -> bytes:
    raws = [buffer.raw() for buffer in buffers]
    position = _HEAD.size + _SPAN.size * len(raws) + len(stream)
    spans: list[bytes] = []
    body: list[bytes | memoryview] = []
    for raw in raws:
        offset = aligned(position)
        spans.append(_SPAN.pack(offset, raw.nbytes))
        body.extend((bytes(offset - position), raw))
        position = offset + raw.nbytes
    return b"".join([_HEAD.pack(MAGIC, len(raws), len(stream)), *spans, stream, *body])


# ---------------------------------------------------------------- loads: the stand-ins


class _DTypeToken:
    """
    What ``numpy.dtype`` unpickles to under the restricted loader.

    A real dtype would let a ``BUILD`` opcode rewrite its flags (claiming it
    holds objects), and numpy would then read raw bytes as object pointers.
    The token checks the state against the canonical one and never applies it.
    """

    __slots__ = ("_base", "dtype")

    def __init__(self, dtype: Any) -> None:
        self._base = dtype
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        candidate = _with_unit(self._base, state)
        if type(state) is tuple and len(state) > 1 and state[1] in ("<", ">"):
            candidate = candidate.newbyteorder(state[1])
        expected = candidate.__reduce__()[2]
        if type(state) is not tuple or not bool(state == expected):
            raise UntrustedPayloadError("pickled numpy dtype state is not canonical")
        self.dtype = candidate


def _with_unit(dtype: Any, state: Any) -> Any:
    """Apply the datetime unit that numpy keeps in a datetime64 dtype's pickled state."""
    if dtype.kind not in "mM" or type(state) is not tuple or len(state) != 9:
        return dtype
    metadata = state[8]
    if type(metadata) is not tuple or len(metadata) != 2 or type(metadata[1]) is not tuple:
        return dtype  # the comparison with the canonical state refuses it
    unit, count = (metadata[1] + (None, None))[:2]
    if type(unit) is not bytes or type(count) is not int or unit == b"generic":
        return dtype
    if not (unit.isalpha() and len(unit) <= 8 and 0 < count < 2**31):
        raise DecodeError("pickled numpy datetime unit is invalid")
    try:
        return numpy_or_none().dtype(f"{dtype.kind}8[{count}{unit.decode()}]")  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise DecodeError("pickled numpy datetime unit is invalid") from exc


class _StandIn:
    """A callable the restricted loader returns for an allowed global; it has no state."""

    __slots__ = ()
    name: ClassVar[str]

    def __call__(self, *args: Any) -> Any:
        raise NotImplementedError


def _plain_dtype(token: Any) -> Any:
    if type(token) is not _DTypeToken:
        raise UntrustedPayloadError("pickled numpy value has no allowed dtype")
    return token.dtype


class _DType(_StandIn):
    __slots__ = ()
    name = "numpy.dtype"

    def __call__(self, spec: Any = None, align: Any = False, copy: Any = False) -> _DTypeToken:
        np = numpy_or_none()
        if type(spec) is not str or len(spec) > MAX_DTYPE_LEN or align not in (False, 0):
            raise UntrustedPayloadError("pickled numpy dtype is not a plain one")
        try:
            dtype = np.dtype(spec)  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise DecodeError("pickled numpy dtype is invalid") from exc
        if not is_plain_dtype(dtype, allow_empty=True):
            raise UntrustedPayloadError(f"pickled numpy dtype {dtype.str!r} is not allowed")
        return _DTypeToken(dtype)


class _FromBuffer(_StandIn):
    __slots__ = ()
    name = "numpy._core.numeric._frombuffer"

    def __call__(
        self, buffer: Any = None, token: Any = None, shape: Any = (), order: Any = "C"
    ) -> Any:
        np = numpy_or_none()
        assert np is not None  # allowed only with numpy installed
        dtype = _plain_dtype(token)
        if type(buffer) not in (bytes, bytearray, memoryview, pickle.PickleBuffer):
            raise UntrustedPayloadError("pickled numpy array has no plain buffer")
        if type(shape) is not tuple or not all(type(dim) is int and dim >= 0 for dim in shape):
            raise DecodeError("pickled numpy array has an invalid shape")
        if order not in ("C", "F") or len(shape) > 32:
            raise DecodeError("pickled numpy array has an invalid layout")
        raw = memoryview(buffer).cast("B")
        count = 1
        for dim in shape:
            count *= dim
        if count * dtype.itemsize != raw.nbytes:
            raise DecodeError("pickled numpy array size does not match its shape")
        check_code_points(raw, dtype, "pickled numpy array")
        array = np.frombuffer(raw, dtype).reshape(shape, order=order)
        if not array.flags.aligned:
            array = array.copy(order="K")
            array.flags.writeable = False
        return array


class _Scalar(_StandIn):
    __slots__ = ()
    name = "numpy._core.multiarray.scalar"

    def __call__(self, token: Any = None, data: Any = None) -> Any:
        np = numpy_or_none()
        assert np is not None
        dtype = _plain_dtype(token)
        if type(data) is not bytes or len(data) != dtype.itemsize:
            raise DecodeError("pickled numpy scalar is malformed")
        if dtype.itemsize == 0:
            return dtype.type()
        check_code_points(data, dtype, "pickled numpy scalar")
        return np.frombuffer(data, dtype)[0]


class _ByteArray(_StandIn):
    __slots__ = ()
    name = "builtins.bytearray"

    def __call__(self, data: Any = b"") -> bytearray:
        # bytearray(n) would allocate n bytes of the payload's choosing
        if type(data) is not bytes:
            raise DecodeError("pickled bytearray is malformed")
        return bytearray(data)


@cache
def _allowed() -> dict[tuple[str, str], Any]:
    # built on first use, so importing this module does not import numpy
    allowed: dict[tuple[str, str], Any] = {}
    for module in ("builtins", "__builtin__"):  # __builtin__: protocol 2 names
        allowed.update(
            {
                (module, "complex"): complex,
                (module, "set"): set,
                (module, "frozenset"): frozenset,
                (module, "bytearray"): _ByteArray(),
            }
        )
    if numpy_or_none() is not None:
        dtype, frombuffer, scalar = _DType(), _FromBuffer(), _Scalar()
        allowed[("numpy", "dtype")] = dtype
        for core in ("numpy._core", "numpy.core"):  # NumPy 2.x and 1.x names
            allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
            allowed[(f"{core}.multiarray", "scalar")] = scalar
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str, /) -> Any:
        found = _allowed().get((module, name))
        if found is None:
            raise UntrustedPayloadError(f"pickle global {module}.{name} is not allowed"[:200])
        return found


# ---------------------------------------------------------------- loads: the opcode scan

_NEWLINE, _TWO_LINES, _LEN1, _LEN4, _LEN4U, _LEN8U = -1, -6, -2, -3, -4, -5
_STOP = ord(".")
_PUT, _LONG_BINPUT = ord("p"), ord("r")
# class instantiation and extension-registry lookups: nothing we accept needs them
_REFUSED = {ord(c): n for n, c in (("INST", "i"), ("OBJ", "o"), ("PERSID", "P"),
            ("BINPERSID", "Q"), ("EXT1", "\x82"), ("EXT2", "\x83"), ("EXT4", "\x84"))}  # fmt: skip


def _arg_table() -> list[int | None]:
    table: list[int | None] = [None] * 256
    for opcode in pickletools.opcodes:
        code = ord(opcode.code)
        if opcode.arg is None:
            table[code] = 0
        elif opcode.name in ("GLOBAL", "INST"):
            table[code] = _TWO_LINES
        else:
            table[code] = opcode.arg.n  # >= 0 fixed size; < 0 pickletools' length codes
    return table


_ARGS = _arg_table()


_WIDTHS = {_LEN1: 1, _LEN4: 4, _LEN4U: 4, _LEN8U: 8}


@lru_cache(maxsize=256)
def _scan_cached(stream: bytes) -> None:
    # the stream of an array body depends only on dtype and shape, so a
    # service sees the same few streams again and again
    _scan(stream)


def _scan(stream: bytes) -> None:
    """
    Walk the opcodes of *stream* without running them.

    The C unpickler grows its memo to twice a ``PUT`` index, so a ten-byte
    payload could make it allocate and zero gigabytes; indices past the
    stream's length are refused here, as are opcodes that build instances of
    arbitrary classes and any trailing data.
    """
    end = len(stream)
    position = 0
    while position < end:
        code = stream[position]
        size = _ARGS[code]
        position += 1
        if size is None:
            raise DecodeError("pickle stream holds an unknown opcode")
        if code in _REFUSED:
            raise UntrustedPayloadError(f"pickle opcode {_REFUSED[code]} is not allowed")
        if code == _STOP:
            if position != end:
                raise DecodeError("pickle stream has trailing data")
            return
        if size >= 0:
            if (
                code == _LONG_BINPUT
                and int.from_bytes(stream[position : position + 4], "little") > end
            ):
                raise DecodeError("pickle memo index out of range")
            position += size
        elif size in (_NEWLINE, _TWO_LINES):
            for _ in range(1 if size == _NEWLINE else 2):
                start, position = position, stream.find(b"\n", position) + 1
                if position == 0:
                    raise DecodeError("pickle stream is truncated")
            if code == _PUT:
                index = stream[start : position - 1]
                if not index.isdigit() or len(index) > 19 or int(index) > end:
                    raise DecodeError("pickle memo index out of range")
        else:
            width = _WIDTHS[size]
            length = int.from_bytes(
                stream[position : position + width], "little", signed=size == _LEN4
            )
            if length < 0:
                raise DecodeError("pickle stream has a negative length")
            position += width + length
    raise DecodeError("pickle stream is truncated")


# ---------------------------------------------------------------- loads: the result check

_CONTAINERS = frozenset((list, tuple, dict, set, frozenset))
_WATCHED = _CONTAINERS | {_DTypeToken}


def _check_value(value: Any, max_depth: int) -> None:
    """Refuse values nested deeper than *max_depth* (cycles included) and stray dtype tokens."""
    if type(value) is _DTypeToken:
        raise DecodeError("numpy dtype objects are not accepted as values")
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise DecodeError(f"pickle body nests deeper than {max_depth}")
        # shared references are walked once per level, so a DAG of width 2 and
        # depth 60 costs 120 visits, not 2**60
        deeper: dict[int, Any] = {}
        for container in level:
            groups = (container, container.values()) if type(container) is dict else (container,)
            for items in groups:
                kinds = set(map(type, items))
                if kinds.isdisjoint(_WATCHED):
                    continue
                if _DTypeToken in kinds:
                    raise DecodeError("numpy dtype objects are not accepted as values")
                deeper.update((id(item), item) for item in items if type(item) in _CONTAINERS)
        level = list(deeper.values())


class Pickle:
    """
    pickle protocol 5; NumPy arrays travel out of band and decode zero-copy.

    Data model (what an untrusted ``loads`` accepts): ``None``, ``bool``,
    ``int``, ``float``, ``complex``, ``str``, ``bytes``, ``bytearray``,
    ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``, NumPy arrays and
    NumPy scalars of dtype kinds bool, int, uint, float, complex, datetime64,
    timedelta64, ``S`` and ``U``. Any other global, and any opcode that builds
    an arbitrary instance, raises UntrustedPayloadError before it runs.

    Args:
        trusted: Load with the full ``pickle``, which runs whatever code the
            payload names. Only for bytes you produced or authenticated.
        max_size: Bytes ``loads`` accepts; more raises PayloadTooLargeError.
        max_depth: Container nesting ``loads`` accepts; deeper (or cyclic)
            values raise DecodeError.

    .. versionadded:: 0.1.0
    """

    name: ClassVar[str] = "pickle"
    media_types: ClassVar[tuple[str, ...]] = BUILTIN_MEDIA_TYPES["pickle"]
    media_type: ClassVar[str] = media_types[0]

    def __init__(
        self,
        *,
        trusted: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.trusted = trusted
        self.max_size = max_size
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return (
            f"Pickle(trusted={self.trusted}, max_size={self.max_size}, max_depth={self.max_depth})"
        )

    def dumps(self, obj: Any, /) -> bytes:
        """
        Encode *obj* with protocol 5; array bytes are appended once, aligned.

        Raises:
            EncodeError: *obj* cannot be pickled.

        .. versionadded:: 0.1.0
        """
        file = io.BytesIO()
        buffers: list[pickle.PickleBuffer] = []
        try:
            _Pickler(file, buffers, numpy_or_none()).dump(obj)
        except (
            pickle.PicklingError,
            TypeError,
            AttributeError,
            ValueError,
            RecursionError,
        ) as exc:
            raise EncodeError("value cannot be pickled") from exc
        stream = file.getvalue()
        return _frame(stream, buffers) if buffers else stream

    def loads(self, data: bytes | memoryview, /) -> Any:
        """
        Decode *data*; out-of-band arrays are read-only views of *data* where aligned.

        Raises:
            PayloadTooLargeError: *data* is over ``max_size``.
            UntrustedPayloadError: *data* names a refused global or opcode
                (not raised when ``trusted``).
            DecodeError: *data* is not a valid pickle, or nests too deep.

        .. versionadded:: 0.1.0
        """
        check_size(data, self.max_size, self.name)
        view = byte_view(data, self.name)
        buffers: list[memoryview] | None = None
        if view[: len(MAGIC)] == MAGIC:
            stream, buffers = _unframe(view)
        else:
            stream = data if type(data) is bytes else view.tobytes()
        try:
            if self.trusted:
                value = pickle.loads(stream, buffers=buffers)
            else:
                if len(stream) <= _SCAN_CACHE_LIMIT:
                    _scan_cached(stream)  # raises are not cached: a bad stream pays each time
                else:
                    _scan(stream)
                value = _RestrictedUnpickler(io.BytesIO(stream), buffers=buffers).load()
        except UntrustedPayloadError as exc:
            protocol = _protocol(stream)
            if protocol >= PROTOCOL:
                raise
            # NumPy arrays below protocol 5 pickle through a global we refuse
            raise UntrustedPayloadError(
                f"{exc.message} (the body is pickle protocol {protocol}: send protocol "
                f"{PROTOCOL}, pickle.dumps(value, protocol={PROTOCOL}), which carries "
                "NumPy arrays without that global)"
            ) from exc
        except ModelDeployError:
            raise
        # pickle raises nearly anything on bad input: UnpicklingError, EOFError,
        # ValueError, KeyError, IndexError, MemoryError, RecursionError, ...
        except Exception as exc:
            raise DecodeError("pickle body could not be decoded") from exc
        _check_value(value, self.max_depth)
        return value


_warned_trusted = False


def warn_if_trusted(serializers: Iterable[object], served_by: str) -> None:
    """
    Log a warning, once per process, when a trusted Pickle is served to a network.

    ``Pickle(trusted=True)`` runs whatever code a body names: on a network
    service, anyone who reaches the port can run code in the process. The
    adapters call this when they serve a service's serializers.
    """
    global _warned_trusted  # once per process: a warning per app would be noise
    if _warned_trusted:
        return
    if any(isinstance(s, Pickle) and s.trusted for s in serializers):
        _warned_trusted = True
        logger.warning(
            "%s serves Pickle(trusted=True): any client that reaches it can run code in "
            "this process; use it only behind authentication, on a trusted network",
            served_by,
        )


def _protocol(stream: bytes) -> int:
    """The protocol a pickle stream declares: its PROTO opcode, else 0 or 1 (none)."""
    if len(stream) >= 2 and stream[0] == pickle.PROTO[0]:
        return stream[1]
    return 0


def _unframe(view: memoryview) -> tuple[bytes, list[memoryview]]:
    if len(view) < _HEAD.size:
        raise DecodeError("pickle frame is truncated")
    _, count, stream_len = _HEAD.unpack_from(view)
    stream_start = _HEAD.size + _SPAN.size * count
    stream_end = stream_start + stream_len
    if stream_end > len(view):
        raise DecodeError("pickle frame is truncated")
    buffers = []
    end = stream_end
    for index in range(count):
        offset, length = _SPAN.unpack_from(view, _HEAD.size + _SPAN.size * index)
        if offset < stream_end or offset + length > len(view):
            raise DecodeError("pickle frame buffer lies outside the body")
        buffers.append(view[offset : offset + length])
        end = max(end, offset + length)
    if end != len(view):
        raise DecodeError("pickle frame has trailing data")
    return view[stream_start:stream_end].tobytes(), buffers
