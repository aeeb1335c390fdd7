"""
A gunicorn ``gthread`` worker with read deadlines for the headers and the body.

gunicorn's gthread worker keeps idle and kept-alive connections on its poller,
not on a thread, and a new connection gets a thread only once it sends a
byte. From then on the thread reads the request with blocking calls and no
timeout: a client that sends one byte a second, or declares
``Content-Length: 100000`` and sends 40 bytes, holds the thread for as long as
it likes, and as many such clients as the worker has threads stop it from
answering anyone (gunicorn's worker ``timeout`` does not fire: the worker's
main loop is alive).

:class:`ThreadWorker` gives every request a deadline: its headers must be in
within ``header_timeout`` seconds of the thread taking the connection, its body
within ``body_timeout`` seconds of the headers. The worker's main loop (which
wakes at least once a second) shuts the read side of a late connection down,
which makes the blocked read return; the client gets ``408 Request Timeout``
and the connection is closed. The application's own time is not limited here.

Run it with ``gunicorn -k modeldeploy.servers.gunicorn.ThreadWorker``; the
timeouts come from the environment (:func:`modeldeploy.servers.read_timeouts`).
Bound the connections with gunicorn's ``worker_connections`` and idle
keep-alive connections with ``keepalive``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, Final

from gunicorn.workers import gthread

from modeldeploy.errors import RequestTimeoutError

from . import read_timeouts

__all__ = ["ThreadWorker"]


def _timeout_response() -> bytes:
    body = json.dumps({"error": RequestTimeoutError().to_dict()}, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


_TIMEOUT_RESPONSE: Final = _timeout_response()


class _Deadline:
    """When one connection's current read must be done, and whether it was cut."""

    __slots__ = ("at", "cut", "headers")

    def __init__(self, at: float, *, headers: bool) -> None:
        self.at = at
        self.headers = headers
        self.cut = False


class _Input:
    """``wsgi.input`` that tells the worker when the body is in, and why it ended early."""

    def __init__(
        self, stream: Any, length: int | None, done: Callable[[], None], deadline: _Deadline
    ) -> None:
        self._stream = stream
        self._left = length
        self._done = done
        self._deadline = deadline

    def _got(self, data: bytes, *, short: bool) -> bytes:
        if self._left is not None:
            self._left -= len(data)
            finished = self._left <= 0
        else:  # chunked: the end is an empty read
            finished = not data
        if self._deadline.cut and not finished and short:
            raise RequestTimeoutError("the request body was not received within the read timeout")
        if finished:
            self._done()
        return data

    def read(self, size: int | None = None) -> bytes:
        try:
            data: bytes = self._stream.read(size)
        except Exception as exc:
            if self._deadline.cut:
                raise RequestTimeoutError(
                    "the request body was not received within the read timeout"
                ) from exc
            raise
        return self._got(data, short=size is None or size < 0 or len(data) < size)

    def readline(self, size: int | None = None) -> bytes:
        line: bytes = self._stream.readline(size)
        return self._got(line, short=not line.endswith(b"\n"))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class ThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """
    gunicorn's gthread worker, with read deadlines for the headers and the body.

    ``header_timeout`` and ``body_timeout`` come from
    :func:`modeldeploy.servers.read_timeouts` (the environment, or 10 s and 30 s).

    .. versionadded:: 0.1.0
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout = read_timeouts()
        self._deadlines: dict[Any, _Deadline] = {}
        self._deadlines_lock = threading.Lock()
        self._local = threading.local()

    def load_wsgi(self) -> None:
        """Load the application and guard its ``wsgi.input`` with the body deadline."""
        super().load_wsgi()
        app: Callable[..., Iterable[bytes]] | None = self.wsgi  # type: ignore[has-type]
        if app is not None:

            def guarded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
                return self._call(app, environ, start_response)

            self.wsgi = guarded

    # -- in the main loop -----------------------------------------------------------

    def accept(self, listener: Any) -> None:
        """Accept a connection onto the poller: it gets a thread once it sends a byte.

        gthread hands a new connection to a thread at once, which waits up to
        5 s for its first byte: as many idle connections as threads stop the
        worker for that long, again and again. Here a connection that sends
        nothing within ``header_timeout`` is closed without ever taking a thread.
        """
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        conn.timeout = time.monotonic() + self.header_timeout
        # murder_pending() expects the earliest deadline first
        bisect.insort(self.pending_conns, conn, key=lambda c: c.timeout)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def set_accept_enabled(self, enabled: bool) -> None:
        """Start or stop accepting; when the worker stops, take the backlog and close.

        On a graceful stop gunicorn's master closes its listening sockets, but
        each worker keeps its copy open until it has drained: the kernel goes on
        completing connections that nobody accepts, and resets them when the
        worker exits. A stopping worker here accepts what is already queued (it
        is answered like any other request), then closes its copy, so that new
        clients are refused at connect instead of being lost.
        """
        super().set_accept_enabled(enabled)
        if enabled or self.alive:
            return
        for listener in self.sockets:
            with contextlib.suppress(OSError):
                listener.setblocking(False)
                while True:
                    accepted = self.nr_conns
                    self.accept(listener)
                    if self.nr_conns == accepted:
                        break
            listener.close()

    # -- in the worker threads ---------------------------------------------------

    def handle(self, conn: Any) -> Any:
        """Serve one connection in a worker thread, its headers under a deadline."""
        self._watch(conn, self.header_timeout, headers=True)
        try:
            return super().handle(conn)
        finally:
            self._unwatch(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Answer one request whose headers are in; its body gets its own deadline."""
        # the headers are in: the body has its own deadline, until the app has read it
        self._local.conn = conn
        try:
            return super().handle_request(req, conn)
        finally:
            self._local.conn = None

    def _call(
        self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any], start_response: Any
    ) -> Iterable[bytes]:
        conn = getattr(self._local, "conn", None)
        length_text = environ.get("CONTENT_LENGTH") or ""
        length = int(length_text) if length_text.isascii() and length_text.isdigit() else None
        chunked = environ.get("wsgi.input_terminated") and length is None
        if conn is None or (not length and not chunked):
            if conn is not None:
                self._unwatch(conn)
            return app(environ, start_response)
        deadline = self._watch(conn, self.body_timeout, headers=False)
        environ["wsgi.input"] = _Input(
            environ["wsgi.input"], length, lambda: self._unwatch(conn), deadline
        )

        try:
            return app(environ, start_response)
        finally:
            self._unwatch(conn)

    def _watch(self, conn: Any, timeout: float, *, headers: bool) -> _Deadline:
        deadline = _Deadline(time.monotonic() + timeout, headers=headers)
        with self._deadlines_lock:
            self._deadlines[conn] = deadline
        return deadline

    def _unwatch(self, conn: Any) -> None:
        with self._deadlines_lock:
            self._deadlines.pop(conn, None)

    # -- in the main loop, at least once a second -------------------------------

    def murder_keepalived(self, force: bool = False) -> None:
        """Close expired kept-alive connections, and cut reads past their deadline."""
        super().murder_keepalived(force)
        self._cut_late()

    def _cut_late(self) -> None:
        now = time.monotonic()
        with self._deadlines_lock:
            late = [
                (conn, deadline)
                for conn, deadline in self._deadlines.items()
                if deadline.at <= now and not deadline.cut
            ]
            for _, deadline in late:
                deadline.cut = True
        for conn, deadline in late:
            with contextlib.suppress(OSError):
                if deadline.headers:
                    # the thread is reading headers: nothing else will answer
                    conn.sock.send(_TIMEOUT_RESPONSE, socket.MSG_DONTWAIT)
                # the blocked recv() returns b"": the thread finishes, the app sees a short body
                conn.sock.shutdown(socket.SHUT_RD)
