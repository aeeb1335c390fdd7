"""
msgpack serializer with NumPy arrays that decode without a copy.

A value without arrays is plain msgpack. A value holding arrays is one msgpack
ext object (the *frame*) whose payload carries the msgpack document, with each
array replaced by a small reference, followed by the arrays' raw bytes at
64-byte aligned offsets. ``loads`` maps every array onto the input buffer with
``np.frombuffer``: msgpack's own ext hook receives a copied ``bytes`` object,
which would cost a memcpy per array, so array bytes never pass through it.
The format is described in ``docs/serializers/msgpack.md``.
"""

from __future__ import annotations

import struct
import threading
from functools import lru_cache
from typing import Any, ClassVar

import msgpack

from modeldeploy.errors import DecodeError, EncodeError, ModelDeployError
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

__all__ = ["ALIGNMENT", "FRAME_EXT", "NDARRAY_EXT", "SCALAR_EXT", "MsgPack"]

FRAME_EXT = 0x46
"""Ext type code (``'F'``) of the frame that holds a document and array bytes."""

NDARRAY_EXT = 0x4E
"""Ext type code (``'N'``) of an array reference inside a frame's document."""

SCALAR_EXT = 0x53
"""Ext type code (``'S'``) of a NumPy scalar: dtype string and raw bytes."""

_FRAME_HEAD = struct.Struct(">BIbI")  # 0xC9, payload length, FRAME_EXT, document length
_U64 = struct.Struct(">Q")
_EXT32_MAX = 2**32 - 1


@lru_cache(maxsize=256)
def _wire_dtype(spec: bytes) -> Any:
    """Return the dtype a wire string names; raise DecodeError unless it is a plain one."""
    np = numpy_or_none()
    if np is None:
        raise DecodeError("msgpack body holds NumPy values but numpy is not installed")
    try:
        dtype = np.dtype(spec.decode("ascii"))
    except Exception as exc:  # np.dtype raises SyntaxError too, for ",1"
        raise DecodeError("msgpack body names an invalid NumPy dtype") from exc
    if not is_plain_dtype(dtype):
        raise DecodeError(f"msgpack body names a refused NumPy dtype {dtype.str!r}")
    return dtype


def _dtype_header(dtype: Any) -> bytes:
    if not is_plain_dtype(dtype):
        raise EncodeError(f"NumPy dtype {dtype.str!r} cannot be encoded as msgpack")
    spec: bytes = dtype.str.encode("ascii")
    return bytes((len(spec),)) + spec


def _split_dtype(payload: bytes) -> tuple[Any, int]:
    """Return the dtype at the start of an ext payload and where the rest begins."""
    if not payload or payload[0] == 0 or payload[0] > MAX_DTYPE_LEN or len(payload) <= payload[0]:
        raise DecodeError("msgpack NumPy ext payload is malformed")
    end = 1 + payload[0]
    return _wire_dtype(payload[1:end]), end


_COUNT_UP_TO = 2048  # bytes of body worth counting before the walk

# bytes.translate deletes these, leaving only bytes that could start a list or map
_NOT_CONTAINER_HEADERS = bytes(
    b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF)
)


def _is_frame(data: bytes | memoryview) -> bool:
    """Whether *data* (bytes or a byte view) starts with the frame's header."""
    return len(data) >= _FRAME_HEAD.size and data[0] == 0xC9 and data[5] == FRAME_EXT


def _container_headers(data: bytes | memoryview) -> int:
    """Count the bytes of the msgpack document that could start a list or map."""
    if type(data) is not bytes:
        data = byte_view(data, "msgpack").tobytes()
    if _is_frame(data):
        # only the document: the array region after it is raw data, and counting
        # its bytes would refuse shallow bodies
        document_len = _FRAME_HEAD.unpack_from(data)[3]
        data = data[_FRAME_HEAD.size : _FRAME_HEAD.size + document_len]
    return len(data.translate(None, _NOT_CONTAINER_HEADERS))


def _too_deep(value: Any, max_depth: int) -> bool:
    """Whether *value* nests lists and maps deeper than *max_depth* (a tree: no sharing)."""
    containers = {list, dict}
    level = [value] if type(value) in containers else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        deeper: list[Any] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            # set(map(type, ...)) runs at C speed, so flat payloads cost little
            if not containers.isdisjoint(set(map(type, items))):
                deeper.extend(item for item in items if type(item) in containers)
        level = deeper
    return False


class _Encoder:
    """One ``dumps`` call: the msgpack ``default`` hook and the arrays it set aside."""

    __slots__ = ("buffers", "busy", "end", "np")

    def __init__(self, np: Any) -> None:
        self.np = np
        self.buffers: list[tuple[int, memoryview]] = []
        self.end = 0
        # in default(), the one place a pack runs code of the value's own (a subclass's
        # __str__, __iter__, view()) that could call dumps again on this thread
        self.busy = False

    def take(self) -> tuple[list[tuple[int, memoryview]], int]:
        """Return the arrays set aside by one ``pack`` and forget them (ready for the next)."""
        buffers, end = self.buffers, self.end
        if buffers:
            self.buffers, self.end = [], 0
        return buffers, end

    def default(self, obj: Any) -> Any:
        self.busy = True
        try:
            return self._default(obj)
        finally:
            self.busy = False

    def _default(self, obj: Any) -> Any:
        np = self.np
        if np is not None:
            if isinstance(obj, np.ndarray):
                return self._array(obj)
            if isinstance(obj, np.generic):
                dtype, raw = obj.dtype, obj.tobytes()
                if dtype.itemsize == 0 and dtype.kind in "SU":
                    # an empty np.bytes_/np.str_ has a zero-width dtype that no
                    # buffer can carry; one NUL-padded item decodes to the same
                    dtype = np.dtype(dtype.kind + "1")
                    raw = bytes(dtype.itemsize)
                return msgpack.ExtType(SCALAR_EXT, _dtype_header(dtype) + raw)
        # strict_types sends subclasses here; keep the values, drop the subclass
        if isinstance(obj, (tuple, list)):
            return list(obj)
        if isinstance(obj, dict):
            return dict(obj)
        for base in (int, float, str, bytes):  # bool cannot be subclassed
            if isinstance(obj, base):
                return base(obj)  # type: ignore[arg-type]
        raise EncodeError(f"{type(obj).__name__} values cannot be encoded as msgpack")

    def _array(self, array: Any) -> msgpack.ExtType:
        header = _dtype_header(array.dtype)
        if type(array) is not self.np.ndarray:
            array = array.view(self.np.ndarray)
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        # a uint8 view exports a buffer for every plain dtype (datetime64 has none)
        raw = memoryview(array.reshape(-1).view(self.np.uint8))
        offset = aligned(self.end)
        self.buffers.append((offset, raw))
        self.end = offset + raw.nbytes
        dims = b"".join(_U64.pack(dim) for dim in array.shape)
        return msgpack.ExtType(
            NDARRAY_EXT, header + bytes((array.ndim,)) + dims + _U64.pack(offset)
        )


_NO_BUFFERS: tuple[list[tuple[int, memoryview]], int] = ([], 0)  # read, never written

# one Packer per thread: packb builds a Packer, and its buffer, on every call
_packing = threading.local()


# a Packer keeps its buffer's capacity: past this, the thread's is dropped after the
# call, or a long-lived thread would hold its largest body for good
_KEEP_PACKER_UP_TO = 1 << 20


def _make_packer() -> tuple[msgpack.Packer, _Encoder]:
    encoder = _Encoder(numpy_or_none())
    # Packer.pack empties its buffer after each call, also when it raises
    packer = msgpack.Packer(
        default=encoder.default, use_bin_type=True, strict_types=True, datetime=False
    )
    return packer, encoder


def _new_packer(state: threading.local) -> tuple[msgpack.Packer, _Encoder]:
    state.pair = pair = _make_packer()
    return pair


class MsgPack:
    """
    msgpack, with NumPy arrays and scalars as ext types; arrays decode zero-copy.

    Data model: ``None``, ``bool``, ``int`` (-2**63 .. 2**64-1), ``float``,
    ``str``, ``bytes``, ``list`` (tuples encode as lists), ``dict`` (keys
    ``str``, ``int``, ``bytes``, ``float``, ``bool`` or ``None``), NumPy arrays
    and NumPy scalars of dtype kinds bool, int, uint, float, complex,
    datetime64, timedelta64, ``S`` and ``U``. Decoded arrays are read-only
    views of the input buffer when it is aligned, so the input stays alive as
    long as they do.

    Args:
        max_size: Bytes ``loads`` accepts; more raises PayloadTooLargeError.
        max_depth: List and map nesting ``loads`` accepts; deeper raises
            DecodeError.

    .. versionadded:: 0.1.0
    """

    name: ClassVar[str] = "msgpack"
    media_types: ClassVar[tuple[str, ...]] = BUILTIN_MEDIA_TYPES["msgpack"]
    media_type: ClassVar[str] = media_types[0]

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        self.max_size = max_size
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return f"MsgPack(max_size={self.max_size}, max_depth={self.max_depth})"

    def dumps(self, obj: Any, /) -> bytes:
        """
        Encode *obj*; arrays are written once, after the document.

        Raises:
            EncodeError: *obj* holds a value outside the data model.

        .. versionadded:: 0.1.0
        """
        try:
            packer, encoder = _packing.pair
        except AttributeError:
            packer, encoder = _new_packer(_packing)
        if encoder.busy:  # called from inside this thread's own dumps: not that Packer
            packer, encoder = _make_packer()
        try:
            document: bytes = packer.pack(obj)
        except ModelDeployError:
            raise
        except (TypeError, ValueError, OverflowError, MemoryError) as exc:
            raise EncodeError("value cannot be encoded as msgpack") from exc
        finally:
            buffers, end = encoder.take() if encoder.buffers else _NO_BUFFERS
        if len(document) > _KEEP_PACKER_UP_TO:
            _packing.__dict__.pop("pair", None)
        if not buffers:
            return document
        head_end = _FRAME_HEAD.size + len(document)
        region = aligned(head_end)
        total = region + end
        if total - 6 > _EXT32_MAX:
            raise EncodeError("arrays are too large for one msgpack body")
        parts: list[bytes | memoryview] = [
            _FRAME_HEAD.pack(0xC9, total - 6, FRAME_EXT, len(document)),
            document,
            bytes(region - head_end),
        ]
        position = region
        for offset, raw in buffers:
            if region + offset > position:
                parts.append(bytes(region + offset - position))
            parts.append(raw)
            position = region + offset + raw.nbytes
        return b"".join(parts)

    def loads(self, data: bytes | memoryview, /) -> Any:
        """
        Decode *data*; arrays are read-only views of *data* where aligned.

        Raises:
            PayloadTooLargeError: *data* is over ``max_size``.
            DecodeError: *data* is not valid, or nests deeper than ``max_depth``.

        .. versionadded:: 0.1.0
        """
        if type(data) is bytes and (len(data) < _FRAME_HEAD.size or data[0] != 0xC9):
            # the common case, a body without arrays: no view, no call to spare
            size = len(data)
            if size > self.max_size:
                check_size(data, self.max_size, self.name)
            try:
                value = msgpack.unpackb(
                    data, ext_hook=_document_ext_hook, strict_map_key=False, timestamp=0
                )
            except ModelDeployError:
                raise
            except _DECODE_ERRORS as exc:
                raise DecodeError("msgpack body could not be decoded") from exc
            if size <= self.max_depth or (
                # every level of nesting starts with a container header byte (fixmap,
                # fixarray, array16/32, map16/32), so a body with no more such bytes
                # than max_depth cannot be too deep: counting them at C speed spares
                # most bodies the walk (only small bodies: in a large one, payload
                # bytes alone pass the bound)
                size <= _COUNT_UP_TO
                and len(data.translate(None, _NOT_CONTAINER_HEADERS)) <= self.max_depth
            ):
                return value
        else:
            check_size(data, self.max_size, self.name)
            view = byte_view(data, self.name)
            value = self._load_frame(view) if _is_frame(view) else _decoded(view, None)
            size = len(view)
            if size <= self.max_depth or (
                size <= _COUNT_UP_TO and _container_headers(data) <= self.max_depth
            ):
                return value
        if _too_deep(value, self.max_depth):
            raise DecodeError(f"msgpack body nests deeper than {self.max_depth}")
        return value

    def _load_frame(self, view: memoryview) -> Any:
        _, payload_len, _, document_len = _FRAME_HEAD.unpack_from(view)
        if payload_len != len(view) - 6:
            raise DecodeError("msgpack frame length does not match the body")
        document_end = _FRAME_HEAD.size + document_len
        region = aligned(document_end)
        if region > len(view):
            raise DecodeError("msgpack frame is truncated")
        return _decoded(view[_FRAME_HEAD.size : document_end], view[region:])


# what msgpack raises for a malformed body (its own errors are ValueErrors)
_DECODE_ERRORS = (ValueError, TypeError, OverflowError, MemoryError, struct.error)


def _scalar(payload: bytes) -> Any:
    dtype, start = _split_dtype(payload)
    if len(payload) - start != dtype.itemsize:
        raise DecodeError("msgpack NumPy scalar has the wrong size")
    check_code_points(payload[start:], dtype, "msgpack NumPy scalar")
    return numpy_or_none().frombuffer(payload, dtype, offset=start)[0]  # type: ignore[union-attr]


def _document_ext_hook(code: int, payload: bytes) -> Any:
    """The ext hook of a body that is not a frame: no array can be referenced."""
    if code == SCALAR_EXT:
        return _scalar(payload)
    if code == NDARRAY_EXT:
        raise DecodeError("msgpack array reference outside a frame")
    raise DecodeError(f"msgpack ext type {code} is not supported")


def _decoded(document: bytes | memoryview, region: memoryview | None) -> Any:
    """Unpack a msgpack document whose array references point into *region*."""
    if region is None:
        ext_hook = _document_ext_hook
    else:

        def ext_hook(code: int, payload: bytes) -> Any:
            if code == NDARRAY_EXT:
                return _array(payload, region)
            return _document_ext_hook(code, payload)

    try:
        # unpackb caps every declared length at the buffer's size, so a huge
        # declared array or string fails before anything is allocated
        return msgpack.unpackb(document, ext_hook=ext_hook, strict_map_key=False, timestamp=0)
    except ModelDeployError:
        raise
    except _DECODE_ERRORS as exc:
        raise DecodeError("msgpack body could not be decoded") from exc


def _array(payload: bytes, region: memoryview) -> Any:
    dtype, start = _split_dtype(payload)
    if len(payload) < start + 1:
        raise DecodeError("msgpack array reference is malformed")
    ndim = payload[start]
    if len(payload) != start + 1 + 8 * ndim + 8 or ndim > 32:
        raise DecodeError("msgpack array reference is malformed")
    shape = struct.unpack_from(f">{ndim}Q", payload, start + 1)
    (offset,) = _U64.unpack_from(payload, start + 1 + 8 * ndim)
    count = 1
    for dim in shape:
        count *= dim
    end = offset + count * dtype.itemsize
    if end > len(region):
        raise DecodeError("msgpack array reference points outside the body")
    np = numpy_or_none()
    assert np is not None  # _split_dtype raised otherwise
    check_code_points(region[offset:end], dtype, "msgpack NumPy array")
    array = np.frombuffer(region[offset:end], dtype).reshape(shape)
    if not array.flags.aligned:
        # misaligned views are slow for every later operation: pay one copy now
        array = array.copy()
        array.flags.writeable = False
    return array
