"""
Reading a request body from a file-like stream without passing a size limit.

The WSGI, Flask and decorator adapters read their body from a blocking stream
(``wsgi.input``, werkzeug's ``request.stream``); this is the one place that
reads it, so every adapter refuses the same bodies with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from modeldeploy.errors import DecodeError, PayloadTooLargeError, RequestTimeoutError

__all__ = ["check_size", "content_length", "read_body", "read_wsgi_input"]

_READ_CHUNK: Final = 1 << 16


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def content_length(value: str) -> int:
    """
    Parse a ``Content-Length`` value.

    Raises:
        DecodeError: *value* is not a decimal number.
    """
    if not (value.isascii() and value.isdigit()):  # isdigit alone takes '²'
        raise DecodeError("Content-Length is not a number")
    return int(value)


def check_size(size: int, limit: int) -> None:
    """
    Refuse a declared body size over *limit*, before anything is read.

    Raises:
        PayloadTooLargeError: *size* is over *limit*.
    """
    if size > limit:
        raise PayloadTooLargeError(f"body of {size} bytes is over the limit of {limit}")


def read_body(stream: _Readable, length: int | None, limit: int) -> bytes:
    """
    Read a body of *length* bytes, or, when *length* is None, to the stream's end.

    A body without a length (chunked) is read only up to one byte past *limit*,
    so a client cannot make us hold more than that. A server whose socket reads
    time out (wsgiref's ``timeout``) gets 408 for a stalled body, not 500.

    Raises:
        PayloadTooLargeError: The body is over *limit*.
        DecodeError: The stream ends before *length* bytes.
        RequestTimeoutError: A read of the stream timed out.
    """
    try:
        return _read_body(stream, length, limit)
    except TimeoutError as exc:  # socket.timeout is TimeoutError
        raise RequestTimeoutError("the request body was not received in time") from exc


def _read_body(stream: _Readable, length: int | None, limit: int) -> bytes:
    if length is not None:
        check_size(length, limit)
        body: bytes = stream.read(length) if length else b""
        if len(body) != length:
            raise DecodeError("the body is shorter than its Content-Length")
        return body
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)


def read_wsgi_input(environ: Mapping[str, Any], length: int | None, limit: int) -> bytes:
    """
    Read ``wsgi.input`` by PEP 3333's rules, with :func:`read_body`.

    Without a ``Content-Length`` there is no body, unless the server sets
    ``wsgi.input_terminated`` (it passes a chunked body through): then the
    stream is read to its end.
    """
    stream = environ["wsgi.input"]
    if length is None and not environ.get("wsgi.input_terminated"):
        return b""
    return read_body(stream, length, limit)
