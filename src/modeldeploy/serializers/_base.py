"""Limits and helpers every serializer backend shares."""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

from ..errors import DecodeError, PayloadTooLargeError

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
"""Bytes a ``loads`` accepts by default (64 MiB)."""

DEFAULT_MAX_DEPTH = 64
"""Container nesting a ``loads`` accepts by default."""

ALIGNMENT = 64
"""Array bytes in a framed body start at a multiple of this many bytes from its start."""

MAX_DTYPE_LEN = 32
"""Longest NumPy dtype string a body may name."""

# dtype kinds whose values are plain bytes: bool, ints, floats, complex,
# datetime/timedelta, fixed-width bytes and str; never object, void or structs
_PLAIN_KINDS = frozenset("biufcmMSU")


def check_size(data: bytes | memoryview, max_size: int, name: str) -> None:
    """Raise PayloadTooLargeError when *data* is over *max_size* bytes."""
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > max_size:
        raise PayloadTooLargeError(f"{name} body of {size} bytes is over the limit of {max_size}")


def byte_view(data: bytes | memoryview, name: str) -> memoryview:
    """
    Return *data* as a read-only, one-dimensional view of unsigned bytes.

    Raises:
        DecodeError: *data* is not a contiguous buffer.
    """
    try:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
    except TypeError as exc:
        raise DecodeError(f"{name} body is not a contiguous buffer") from exc
    return view.toreadonly()


def aligned(offset: int) -> int:
    """Return the first multiple of :data:`ALIGNMENT` at or after *offset*."""
    return -(-offset // ALIGNMENT) * ALIGNMENT


def is_plain_dtype(dtype: Any, *, allow_empty: bool = False) -> bool:
    """
    Whether values of NumPy *dtype* are plain bytes, safe to send and map.

    Args:
        dtype: A ``numpy.dtype``.
        allow_empty: Accept the zero-width ``S`` and ``U`` dtypes that
            ``np.str_("")`` and ``np.bytes_(b"")`` carry.
    """
    return (
        dtype.kind in _PLAIN_KINDS
        and not dtype.hasobject
        and dtype.fields is None
        and dtype.subdtype is None
        and (dtype.itemsize > 0 or (allow_empty and dtype.kind in "SU"))
    )


_MAX_CODE_POINT = 0x10FFFF


def check_code_points(raw: bytes | memoryview, dtype: Any, what: str) -> None:
    """
    Raise DecodeError when the bytes of a NumPy ``U`` value hold no valid character.

    NumPy maps any 4-byte units, but making a ``str`` of one beyond U+10FFFF raises
    SystemError, later and far from the body that carried it.
    """
    if dtype.kind != "U" or not len(raw):
        return
    np = numpy_or_none()
    assert np is not None
    codes = np.frombuffer(raw, dtype=np.dtype("u4").newbyteorder(dtype.byteorder))
    if codes.size and int(codes.max()) > _MAX_CODE_POINT:
        raise DecodeError(f"{what} holds a character beyond U+10FFFF")


@cache
def numpy_or_none() -> ModuleType | None:
    """Return the numpy module when it is installed, else ``None``; imported once."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - the test venv has numpy
        return None
    return numpy
