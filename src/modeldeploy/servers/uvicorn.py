"""
uvicorn's HTTP protocols with read deadlines for the headers and the body.

uvicorn closes a kept-alive connection that stays idle for
``timeout_keep_alive`` seconds, but a new connection that sends nothing, a
client that sends its headers one byte a second, or one that stalls in the
middle of its body keeps its connection open indefinitely. These subclasses
of uvicorn's own protocols add two deadlines:

* the headers must be in within ``header_timeout`` seconds of the connection
  opening (or of the previous answer on a kept-alive connection);
* the body must be in within ``body_timeout`` seconds of the headers.

Past either, the client gets ``408 Request Timeout`` with ``Connection:
close`` and the connection is closed; the application sees
``http.disconnect``. Once the body is in, the application's own time is not
limited here (the service's ``timeout`` does that).

Run them with ``uvicorn.run(app, http=protocol())``; the timeouts come from the
environment (:func:`modeldeploy.servers.read_timeouts`), so they reach every
process of ``uvicorn --workers N``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final, Protocol

from uvicorn.protocols.http import h11_impl

from modeldeploy.errors import RequestTimeoutError

from . import read_timeouts

__all__ = ["H11Protocol", "protocol"]


def _timeout_response() -> bytes:
    error = RequestTimeoutError()
    body = json.dumps({"error": error.to_dict()}, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        "connection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


_TIMEOUT_RESPONSE: Final = _timeout_response()


class _Cycle(Protocol):
    more_body: bool
    response_started: bool


class _HTTPProtocol(Protocol):
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any


class _ReadDeadline:
    """
    The deadline of one connection: for the headers, then for the body.

    Moving the deadline costs a clock read, not a timer: the one timer of the
    connection fires at or before the deadline and, if the deadline moved on
    since, waits again for the rest (inlined for speed: a ``call_later`` and a
    ``cancel`` on every request of a kept-alive connection cost about 2 us).
    """

    def __init__(self, owner: _HTTPProtocol) -> None:
        self._owner = owner
        self._header_timeout, self._body_timeout = read_timeouts()
        self._deadline: float | None = None  # the loop's time past which the read is late
        self._handle: asyncio.TimerHandle | None = None  # due at or before the deadline
        self._cycle: object = None  # the request whose headers were seen last
        self._reading_body = False

    def headers(self) -> None:
        """Wait for the headers of a new request (a new connection or a kept-alive one)."""
        self._cycle = self._owner.cycle
        self._reading_body = False
        self._arm(self._header_timeout)

    def received(self) -> None:
        """Follow the request after bytes arrive: headers complete, body complete."""
        cycle: _Cycle | None = self._owner.cycle
        if cycle is None:
            return
        if cycle is not self._cycle:
            self._cycle = cycle
            self._reading_body = cycle.more_body
            if self._reading_body:
                self._arm(self._body_timeout)
            else:
                self._deadline = None
        elif self._reading_body and not cycle.more_body:
            self._reading_body = False
            self._deadline = None

    def cancel(self) -> None:
        """Drop the deadline and its timer (the connection is gone)."""
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, delay: float) -> None:
        if self._owner.transport.is_closing():
            self._deadline = None
            return
        loop = self._owner.loop
        deadline = self._deadline = loop.time() + delay
        handle = self._handle
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return
        loop = self._owner.loop
        if loop.time() < deadline:  # moved on since the timer was set: wait for the rest
            self._handle = loop.call_at(deadline, self._fire)
            return
        self._deadline = None
        self._expired()

    def _expired(self) -> None:
        transport = self._owner.transport
        if transport.is_closing():
            return
        cycle: _Cycle | None = self._owner.cycle
        if self._reading_body and cycle is not None and cycle.response_started:
            return  # the application answered without reading the whole body
        transport.write(_TIMEOUT_RESPONSE)
        transport.close()


class _ReadDeadlines:
    """
    The read deadlines, mixed into either of uvicorn's HTTP protocols.

    Listed before the protocol class in the bases, so each hook runs ours around
    uvicorn's own (``super()`` is the protocol).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline = _ReadDeadline(self)  # type: ignore[arg-type]

    def connection_made(self, transport: asyncio.Transport) -> None:
        """Start the headers deadline of a new connection."""
        super().connection_made(transport)  # type: ignore[misc]
        self._read_deadline.headers()

    def data_received(self, data: bytes) -> None:
        """Feed the parser, then follow the request: headers in, body in."""
        super().data_received(data)  # type: ignore[misc]
        self._read_deadline.received()

    def on_response_complete(self) -> None:
        """Start the headers deadline of the next request on this connection."""
        self._read_deadline.headers()
        super().on_response_complete()  # type: ignore[misc]  # may start a pipelined request
        self._read_deadline.received()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._read_deadline.cancel()
        super().connection_lost(exc)  # type: ignore[misc]


class H11Protocol(_ReadDeadlines, h11_impl.H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with read deadlines for the headers and the body."""


try:
    from uvicorn.protocols.http import httptools_impl
except ImportError:  # httptools is optional: uvicorn then uses h11 too
    httptools_impl = None  # type: ignore[assignment]


if httptools_impl is not None:

    class HttpToolsProtocol(_ReadDeadlines, httptools_impl.HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol with read deadlines for the headers and the body."""

    __all__ += ["HttpToolsProtocol"]


def protocol() -> type[asyncio.Protocol]:
    """
    Return the protocol class uvicorn's ``http="auto"`` would pick, with read deadlines.

    httptools' when it is installed (it is faster), h11's otherwise.

    Example:
        ``uvicorn.run(app, http=protocol(), timeout_keep_alive=5, limit_concurrency=1000)``

    .. versionadded:: 0.1.0
    """
    if httptools_impl is not None:
        return HttpToolsProtocol
    return H11Protocol
