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

An answer goes to the transport's buffer at once. A client that reads none of it
would keep it there (closing a connection waits for its buffer to drain), so a
connection whose writes stay paused for ``send_timeout`` seconds
(:func:`modeldeploy.servers.send_timeout`) is aborted.

Run them with ``uvicorn.run(app, http=protocol())``; the timeouts come from the
environment (:func:`modeldeploy.servers.read_timeouts`), so they reach every
process of ``uvicorn --workers N``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final, Protocol

from uvicorn.protocols.http import h11_impl

from modeldeploy.errors import RequestTimeoutError
from modeldeploy.messages import Response

from . import read_timeouts, send_timeout

__all__ = ["H11Protocol", "protocol"]

logger = logging.getLogger("modeldeploy")


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
    _direct: object


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
        # HttpToolsProtocol's idle keep-alive: the loop's time past which a connection
        # that has sent no byte since its last answer is closed, as uvicorn's timer does
        self.idle_until: float | None = None

    def headers(self, idle: float | None = None) -> None:
        """
        Wait for the headers of a new request (a new connection or a kept-alive one).

        With *idle*, a connection that sends nothing for *idle* seconds is closed
        without an answer (uvicorn's keep-alive timeout, kept on this timer: a
        ``call_later`` and its ``cancel`` on every answer cost 3-5 us in process).
        """
        self._cycle = self._owner.cycle
        self._reading_body = False
        self._arm(self._header_timeout, idle)

    def received(self) -> None:
        """Follow the request after bytes arrive: headers complete, body complete."""
        owner = self._owner
        if owner._direct is not None:  # a direct request (HttpToolsProtocol) wants its body
            if not self._reading_body:
                self._reading_body = True
                self._arm(self._body_timeout)
            return
        cycle: _Cycle | None = owner.cycle
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

    def body_done(self) -> None:
        """A direct request's body is in: no deadline until its answer is out."""
        self._reading_body = False
        self._deadline = None

    def cancel(self) -> None:
        """Drop the deadline and its timer (the connection is gone)."""
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, delay: float, idle: float | None = None) -> None:
        if self._owner.transport.is_closing():
            self._deadline = self.idle_until = None
            return
        loop = self._owner.loop
        now = loop.time()
        due = self._deadline = now + delay
        if idle is not None:
            self.idle_until = now + idle
            due = min(due, self.idle_until)
        handle = self._handle
        if handle is None or handle.when() > due:
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._handle = None
        deadline = self._deadline
        idle = self.idle_until
        if deadline is None and idle is None:
            return
        loop = self._owner.loop
        now = loop.time()
        if idle is not None and now >= idle:  # nothing sent since the last answer
            self._deadline = self.idle_until = None
            transport = self._owner.transport
            if not transport.is_closing():
                transport.close()
            return
        due = min(t for t in (deadline, idle) if t is not None)
        if now < due:  # moved on since the timer was set: wait for the rest
            self._handle = loop.call_at(due, self._fire)
            return
        self._deadline = None
        self._expired()

    def _expired(self) -> None:
        transport = self._owner.transport
        if transport.is_closing():
            return
        cycle: _Cycle | None = self._owner.cycle
        direct = self._owner._direct is not None  # its cycle, if any, is an earlier one's
        if self._reading_body and not direct and cycle is not None and cycle.response_started:
            return  # the application answered without reading the whole body
        transport.write(_TIMEOUT_RESPONSE)
        transport.close()


class _HeldWrites:
    """
    A connection's transport as its protocol writes to it: a head waits for its body.

    uvicorn writes a response's status line and headers as soon as the app
    sends ``http.response.start``, and the body with the next message: two
    ``send`` system calls and two TCP segments for most answers. Here a write
    is held until the next one, and both go out in one ``writelines`` (one
    ``writev``); a write nothing follows goes out when the loop comes round
    (a ``call_soon``), so a streamed answer's head is never held longer.
    One system call less a response: the raw app of ``benchmarks/http.py``
    took 48 us of server CPU a request this way, 53 us with uvicorn's own
    protocol (wrk, c=64, six interleaved runs on a shared machine).
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        """Hold *data* until the next write or the loop's next round; send both as one."""
        held = self._held
        if held is None:
            if data:
                self._held = data
                self._loop.call_soon(self.flush)
            return
        self._held = None
        self._transport.writelines((held, data))

    def flush(self) -> None:
        """Send what is held, if anything."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, data: Any) -> None:
        """Send what is held, then *data*."""
        self.flush()
        self._transport.writelines(data)

    def write_eof(self) -> None:
        """Send what is held, then close the writing side."""
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Send what is held, then close."""
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        """Whether the connection is closing or closed."""
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        """The transport's buffered bytes, and what is held here."""
        held = self._held
        return self._transport.get_write_buffer_size() + (len(held) if held else 0)

    def __getattr__(self, name: str) -> Any:
        # the rest of the transport's interface (pause_reading, get_extra_info,
        # set_protocol...), as it is
        return getattr(self._transport, name)


class _ReadDeadlines:
    """
    The read deadlines, mixed into either of uvicorn's HTTP protocols.

    Listed before the protocol class in the bases, so each hook runs ours around
    uvicorn's own (``super()`` is the protocol).
    """

    _direct: object = None  # HttpToolsProtocol's direct request being read

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline = _ReadDeadline(self)  # type: ignore[arg-type]

    def connection_made(self, transport: asyncio.Transport) -> None:
        """Start the headers deadline of a new connection; hold a head for its body."""
        super().connection_made(transport)  # type: ignore[misc]
        # after uvicorn's own: its flow control keeps the transport itself
        self.transport = _HeldWrites(transport, self.loop)  # type: ignore[attr-defined]
        self._read_deadline.headers()

    def data_received(self, data: bytes) -> None:
        """Feed the parser, then follow the request: headers in, body in."""
        self._read_deadline.idle_until = None  # a byte came: the connection is not idle
        super().data_received(data)  # type: ignore[misc]
        self._read_deadline.received()

    def on_response_complete(self) -> None:
        """Start the headers deadline of the next request on this connection."""
        self._read_deadline.headers()
        super().on_response_complete()  # type: ignore[misc]  # may start a pipelined request
        self._read_deadline.received()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadlines with the connection."""
        self._read_deadline.cancel()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    # the send deadline: an answer the client does not take stays in the transport's
    # buffer, and closing waits for it to drain, so a client that reads nothing would
    # hold the memory of its answers for as long as it keeps the connection
    _send_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        """The client is behind: it has the send timeout to take what is buffered."""
        super().pause_writing()  # type: ignore[misc]
        if self._send_timer is None:
            loop: asyncio.AbstractEventLoop = self.loop  # type: ignore[attr-defined]
            self._send_timer = loop.call_later(send_timeout(), self._send_late)

    def resume_writing(self) -> None:
        """The client caught up: the send deadline is off."""
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().resume_writing()  # type: ignore[misc]

    def _send_late(self) -> None:
        self._send_timer = None
        transport: Any = self.transport
        logger.warning(
            "closing a connection to %s: the client did not take its answer within %g s "
            "(send timeout); %d bytes dropped",
            transport.get_extra_info("peername"),
            send_timeout(),
            transport.get_write_buffer_size(),
        )
        transport.abort()  # close() would wait for the buffer to drain


class H11Protocol(_ReadDeadlines, h11_impl.H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with read deadlines for the headers and the body."""


try:
    from uvicorn.protocols.http import httptools_impl
except ImportError:  # httptools is optional: uvicorn then uses h11 too
    httptools_impl = None  # type: ignore[assignment]


if httptools_impl is not None:

    class HttpToolsProtocol(_ReadDeadlines, httptools_impl.HttpToolsProtocol):  # type: ignore[misc]
        """
        uvicorn's httptools protocol with read deadlines, and a direct lane to the model.

        When the app is modeldeploy's ASGI app (as ``modeldeploy serve`` runs
        it), a ``POST`` to a model route it has answered before skips the ASGI
        cycle: the body is gathered from the parser, and the service answers as
        the ASGI app would, on the event loop for a ``workers=0`` service, on
        its worker threads (:meth:`Service.handle_then <modeldeploy.Service.handle_then>`)
        otherwise, and the answer is written at once or when ready. No task,
        no ``receive``/``send``, no message dicts: about 9 us of server CPU a
        request less for the tiny model of ``benchmarks/http.py`` (68 -> 59),
        about 20 for the batched heavy one. Everything else (another method or
        route, ``Expect: 100-continue``, a chunked or oversized body, a request
        pipelined behind an answer not written yet, a client that does not
        read its answers, an access log) takes the ASGI cycle as before, in
        order. uvicorn's idle keep-alive timeout is kept on the read
        deadlines' timer.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._direct_app = _direct_app(self.app)
            # the ASGI cycle writes the access log; a direct answer would write none
            logs = self.access_log and self.access_logger.isEnabledFor(logging.INFO)
            if logs:
                self._direct_app = None
            self._direct: object = None  # the route of the request being read directly
            self._direct_body: list[bytes] = []
            self._direct_keep_alive = True
            self._owing = False  # a direct answer is owed: the model runs on a worker
            self._scope_due = False  # on_message_begin left uvicorn's scope to build
            self._last_url = b""  # the URL of the last direct request, and its route
            self._last_route: object = None
            self._owed = _Owed()  # the cycle in uvicorn's eyes while it is owed

        def on_message_begin(self) -> None:
            """A new request: its ASGI scope is built only if the direct lane leaves it."""
            if self._direct_app is None:
                super().on_message_begin()
                return
            # inlined for speed: uvicorn's scope dict costs about 0.6 us a request
            self.url = b""
            self.expect_100_continue = False
            self.headers = []
            self._scope_due = True

        def on_headers_complete(self) -> None:
            """Take the direct lane when the request allows it, else uvicorn's ASGI cycle."""
            if self._direct_app is not None:
                if self._take_direct():
                    return
                if self._scope_due:  # uvicorn's own scope, with what was read so far
                    url, headers, expect = self.url, self.headers, self.expect_100_continue
                    super().on_message_begin()
                    self.url, self.headers, self.expect_100_continue = url, headers, expect
                    self.scope["headers"] = headers
                    self._scope_due = False
            super().on_headers_complete()

        def _take_direct(self) -> bool:
            parser = self.parser
            if parser.get_method() != b"POST" or self.expect_100_continue:
                return False
            cycle = self.cycle
            if (cycle is not None and not cycle.response_complete) or self.flow.write_paused:
                return False  # answers go out in order; a client that does not read waits
            if self.root_path or parser.should_upgrade():
                return False
            limit = self.limit_concurrency
            if limit is not None and len(self.connections) >= limit:
                return False  # uvicorn's 503
            url: bytes = self.url
            if url[:1] != b"/" or b"?" in url or b"%" in url or b"#" in url:
                return False  # a query, an escape or an absolute URL: uvicorn parses it
            app = self._direct_app
            length = None
            for name, value in self.headers:
                if name == b"content-length":
                    if length is not None:
                        return False
                    length = value
                elif name == b"transfer-encoding":
                    return False
            if (
                length is None
                or not length.isdigit()
                or len(length) > 19  # llhttp refuses more; int() of thousands raises
                or int(length) > app.max_body_size
            ):
                return False
            if url == self._last_url:  # a kept-alive connection calls the same route again
                route = self._last_route
            else:
                route = app.direct_route("POST", url.decode("latin-1"))
                if route is None:
                    return False
                self._last_url, self._last_route = url, route  # a route, once found, stays
            self._direct = route
            self._direct_body = []
            self._direct_keep_alive = (
                parser.should_keep_alive() and parser.get_http_version() != "1.0"
            )
            return True

        def on_body(self, body: bytes) -> None:
            """Gather a direct request's body; uvicorn's cycle takes the others."""
            if self._direct is not None:
                self._direct_body.append(body)
            else:
                super().on_body(body)

        def on_message_complete(self) -> None:
            """Answer a direct request now; hand the others' end to uvicorn's cycle."""
            route = self._direct
            if route is None:
                super().on_message_complete()
                return
            self._direct = None
            self._read_deadline.body_done()
            chunks = self._direct_body
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._owing = True
            try:
                response = self._direct_app.direct_answer(route, self.headers, body, self._answer)
            except Exception:  # it answers every failure itself; a bug might not
                logger.exception("answering %r failed", route)
                response = _INTERNAL_ERROR if self._owing else None
            if response is not None:  # computed on the event loop (inline)
                self._answer(response)
            elif self._owing:  # computing on a worker: what follows queues behind it
                owed = self._owed
                owed.response_complete = owed.disconnected = False
                owed.keep_alive = self._direct_keep_alive
                self.cycle = owed  # type: ignore[assignment]  # reads as a cycle, see _Owed

        def _answer(self, response: Any) -> None:
            """Write a direct answer; then start what waited for it (pipelined requests)."""
            self._owing = False
            owed = self._owed
            cycle: Any = self.cycle
            if cycle is owed:
                owed.response_complete = True
                keep_alive = owed.keep_alive  # uvicorn's shutdown may have turned it off
            else:
                keep_alive = self._direct_keep_alive
            transport = self.transport
            if transport.is_closing():
                return  # the client left while the model computed
            head, body = _encode(response, self.server_state.default_headers, keep_alive)
            if head is _INTERNAL_HEAD:
                keep_alive = False
            transport.writelines((head, body))
            if not keep_alive:
                transport.close()
            self.on_response_complete()

        def on_response_complete(self) -> None:
            """
            uvicorn's, with its idle keep-alive timeout kept by the read deadline's timer.

            A pipelined request starts now, as in uvicorn; else the connection
            waits for the next one's headers, and is closed after
            ``timeout_keep_alive`` seconds with no byte of it.
            """
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            deadline = self._read_deadline
            if self.pipeline:
                deadline.headers()
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                deadline.headers(idle=self.timeout_keep_alive)
            deadline.received()

        def shutdown(self) -> None:
            """Close after the direct request being read is answered; else uvicorn's."""
            if self._direct is not None:
                self._direct_keep_alive = False
                return
            super().shutdown()

    class _NoEvent:
        def set(self) -> None:
            pass

    class _Owed:
        """
        The cycle of a direct answer still owed, as uvicorn's code reads a cycle.

        uvicorn queues a request that comes while the connection's cycle is not
        complete, sets ``disconnected`` when the client leaves and clears
        ``keep_alive`` on shutdown; the protocol reads them back when it answers.
        """

        __slots__ = ("disconnected", "keep_alive", "response_complete")
        response_started = False
        more_body = False
        message_event: Final = _NoEvent()

        def __init__(self) -> None:
            self.response_complete = True
            self.keep_alive = True
            self.disconnected = False

    __all__ += ["HttpToolsProtocol"]

    _STATUS_LINES: Final = httptools_impl.STATUS_LINE
    _INTERNAL_HEAD: Final = (
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
        b"content-length: 56\r\nconnection: close\r\n\r\n"
    )
    _INTERNAL_BODY: Final = b'{"error":{"code":"internal","message":"internal error"}}'
    _INTERNAL_ERROR: Final = Response(500, {"content-type": "application/json"}, _INTERNAL_BODY)
    # the server's default headers (Date, a new list once a second) as bytes, by identity
    _defaults: list[Any] = [None, b""]

    def _encode(
        response: Any, defaults: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> tuple[bytes, bytes]:
        """A direct answer as (head, body): status line, the server's headers, then ours."""
        if _defaults[0] is not defaults:
            _defaults[1] = b"".join([name + b": " + value + b"\r\n" for name, value in defaults])
            _defaults[0] = defaults
        headers = response.headers
        text = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        count = len(headers)
        try:
            if text.count("\n") != count or text.count("\r") != count:
                raise ValueError("a line break in a header would split the answer")
            encoded = text.encode("latin-1")
        except ValueError as exc:  # uvicorn refuses such a header too (UnicodeError included)
            logger.error("refused to send the headers %r: %s", dict(headers), exc)
            return _INTERNAL_HEAD, _INTERNAL_BODY
        body: bytes = response.body
        head = b"".join(
            (
                _STATUS_LINES[response.status],
                _defaults[1],
                encoded,
                b"content-length: %d\r\n" % len(body),
                b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
            )
        )
        return head, body

    def _direct_app(app: Any) -> Any:
        """The app under uvicorn's middlewares that offers the direct lane, or None."""
        for _ in range(8):  # uvicorn wraps in a middleware or two (proxy headers, trace log)
            if hasattr(app, "direct_route") and hasattr(app, "direct_answer"):
                return app
            if not type(app).__module__.startswith("uvicorn."):
                return None
            app = getattr(app, "app", None)
        return None


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
