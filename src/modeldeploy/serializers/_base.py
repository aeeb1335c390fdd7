"""Limits and helpers every serializer backend shares."""

from __future__ import annotations

from functools import cache
from types import ModuleType

from ..errors import PayloadTooLargeError

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
"""Bytes a ``loads`` accepts by default (64 MiB)."""

DEFAULT_MAX_DEPTH = 64
"""Container nesting a ``loads`` accepts by default."""


def check_size(data: bytes | memoryview, max_size: int, name: str) -> None:
    """Raise PayloadTooLargeError when *data* is over *max_size* bytes."""
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > max_size:
        raise PayloadTooLargeError(f"{name} body of {size} bytes is over the limit of {max_size}")


@cache
def numpy_or_none() -> ModuleType | None:
    """Return the numpy module when it is installed, else ``None``; imported once."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - the test venv has numpy
        return None
    return numpy
