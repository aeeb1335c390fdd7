"""
A gunicorn ``gthread`` worker that reads each request in full before a thread gets it.

gunicorn's gthread worker keeps idle and kept-alive connections on its poller,
not on a thread, but hands a connection to a thread as soon as it is readable.
From then on the thread reads the request with blocking calls: a client that
sends one byte a second, or declares ``Content-Length: 100000`` and sends 40
bytes, holds the thread for as long as it likes, and as many such clients as
the worker has threads stop it from answering anyone (gunicorn's worker
``timeout`` does not fire: the worker's main loop is alive).

:class:`ThreadWorker` reads on its poller instead. The main loop receives each
request's head and body without blocking (``Content-Length`` or chunked, up to
the body limit, :func:`modeldeploy.servers.max_body_size`) and hands the
connection to a thread only once the request is all in; the thread's parser
then reads from those bytes, and the application never waits for the network.
Slow and stalled clients cost a buffer each, not a thread. The deadlines are
kept on the poller too: the headers must be in within ``header_timeout``
seconds of the connection opening (or of the first byte of a kept-alive
connection's next request), the body within ``body_timeout`` seconds of the
headers; past either the client gets ``408 Request Timeout`` and the
connection is closed. The application's own time is not limited here. Answers
are still written by the thread, with blocking sends: each piece must be taken
by the client within ``send_timeout`` seconds of being made
(:func:`modeldeploy.servers.send_timeout`), else the connection is shut and the
thread goes free.

Memory is bounded too: requests still coming in hold at most twice the body
limit (at least 16 MiB) per worker process, beyond the first 64 KiB of each;
past that, the worker stops reading the larger ones (their deadlines run on)
until some are handed over, and small requests are still read.

What is not buffered goes the old way, a thread reading under the same
deadlines (enforced by shutting the late connection's read side down): a body
over the limit (the application refuses it by its ``Content-Length``, a
chunked one once it has read past the limit), TLS connections, HTTP/2 with
prior knowledge and the PROXY protocol.

Run it with ``gunicorn -k modeldeploy.servers.gunicorn.ThreadWorker``; the
timeouts and the body limit come from the environment
(:func:`modeldeploy.servers.read_timeouts`,
:func:`modeldeploy.servers.max_body_size`). Bound the connections with
gunicorn's ``worker_connections`` and idle keep-alive connections with
``keepalive``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import heapq
import itertools
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, Final

import gunicorn

if int(gunicorn.__version__.split(".")[0]) < 27:  # pragma: no cover  # the tests run 27
    raise ImportError(
        "modeldeploy.servers.gunicorn needs gunicorn 27 or later "
        f"(pip install -U 'gunicorn>=27'), found {gunicorn.__version__}"
    )

from gunicorn.http import message  # after the version check
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

from modeldeploy.errors import RequestTimeoutError

from . import max_body_size, read_timeouts, send_timeout

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
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_RECV: Final = 64 * 1024  # bytes asked of one recv() while reading a head
_RECV_MAX: Final = 1024 * 1024  # largest recv(), and most bytes one readable event takes
_FREE: Final = 64 * 1024  # bytes a request may always buffer, whatever the others hold
_LINGER_S: Final = 2.0  # how long a closing connection is drained (gunicorn's close_graceful)
_LINGER_BYTES: Final = 64 * 1024

# where _Framing is in the request
_HEAD, _LENGTH, _SIZE, _DATA, _TRAILER, _DONE = range(6)


class _Framing:
    """
    Where the HTTP/1.x request at the start of a buffer ends, as its bytes come in.

    :meth:`scan` is called after each read with the whole buffer and resumes where
    it stopped. It says the request is in when the buffer holds its head and its
    whole body (``Content-Length`` bytes, or chunks up to the last one and the
    trailers), so that gunicorn's parser can read it without touching the socket.
    It does not validate: a head or chunk it cannot make sense of, or a body over
    *max_body*, ends the scan early (:attr:`whole` is then false) and gunicorn's
    parser or the application answers it (400, 413), reading the socket if it must.
    """

    __slots__ = (
        "body",
        "end",
        "expects_continue",
        "max_body",
        "max_head",
        "max_line",
        "max_trailer",
        "phase",
        "pos",
        "whole",
    )

    def __init__(self, max_head: int, max_body: int, max_line: int, max_trailer: int) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self.max_line = max_line
        self.max_trailer = max_trailer
        self.phase = _HEAD
        self.pos = 0  # where the scan resumes
        self.end = 0  # in _LENGTH and _DATA: the length the buffer must reach
        self.body = 0  # body bytes announced so far
        self.expects_continue = False  # the client waits for "100 Continue" before its body
        self.whole = False  # the request is in, to its last byte

    @property
    def in_body(self) -> bool:
        """Whether the head is in and the body is still coming."""
        return _HEAD < self.phase < _DONE

    def wants(self) -> int:
        """How many more bytes a read may take without crossing the end of the request."""
        if self.phase in (_LENGTH, _DATA):
            return max(self.end - self.pos, _RECV)
        return _RECV

    def scan(self, buf: bytearray) -> bool:
        """Return whether *buf* holds the request, or as much as a thread should get."""
        while True:
            phase = self.phase
            if phase == _DONE:
                return True
            if phase == _HEAD:
                if not self._head(buf):
                    return self.phase == _DONE
            elif phase in (_LENGTH, _DATA):
                if len(buf) < self.end:
                    self.pos = len(buf)
                    return False
                self.pos = self.end
                if phase == _DATA:
                    self.phase = _SIZE
                else:
                    self._done()
            elif phase == _SIZE:
                if not self._size(buf):
                    return self.phase == _DONE
            elif not self._trailer(buf):
                return self.phase == _DONE

    def _done(self, *, whole: bool = True) -> None:
        self.phase = _DONE
        self.whole = whole

    def _head(self, buf: bytearray) -> bool:
        end = buf.find(b"\r\n\r\n", max(0, self.pos - 3))
        if end < 0:
            if len(buf) > self.max_head or buf.find(b"\n\n", max(0, self.pos - 1)) >= 0:
                self._done(whole=False)  # over gunicorn's limits, or bare LFs: its 400
            self.pos = len(buf)
            return False
        self.pos = end + 4
        lines = bytes(buf[:end]).split(b"\r\n")
        length: int | None = None
        codings: list[bytes] = []
        version = lines[0].rpartition(b" ")[2]
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue  # gunicorn's 400 (or a PROXY line): the parser decides
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    self._done(whole=False)
                    return False
                length = int(value)
            elif name == b"transfer-encoding":
                codings += [c.strip(b" \t").lower() for c in value.split(b",")]
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expects_continue = version == b"HTTP/1.1"
        if codings:
            if length is not None or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
                self._done(whole=False)  # gunicorn's 400
                return False
            self.phase = _SIZE
        elif length:
            if length > self.max_body:
                self._done(whole=False)  # the application's 413, by its Content-Length
                return False
            self.body = length
            self.phase = _LENGTH
            self.end = self.pos + length
        else:
            self._done()
            return False
        return True

    def _size(self, buf: bytearray) -> bool:
        eol = buf.find(b"\r\n", self.pos)
        if eol < 0:
            if len(buf) - self.pos > self.max_line:
                self._done(whole=False)
            return False
        digits = bytes(buf[self.pos : eol]).partition(b";")[0].rstrip(b" \t")
        try:
            size = int(digits, 16)
        except ValueError:
            size = -1
        if size < 0 or not digits.isalnum():
            self._done(whole=False)  # gunicorn's 400
            return False
        self.pos = eol + 2
        if size == 0:
            self.phase = _TRAILER
            return True
        self.body += size
        if self.body > self.max_body:
            self._done(whole=False)  # the application's 413 once it reads past the limit
            return False
        self.phase = _DATA
        self.end = self.pos + size + 2  # the chunk, then its CRLF
        return True

    def _trailer(self, buf: bytearray) -> bool:
        if len(buf) - self.pos < 2:
            return False
        if buf[self.pos : self.pos + 2] == b"\r\n":
            self._done()
            return False
        end = buf.find(b"\r\n\r\n", self.pos)
        if end < 0:
            if len(buf) - self.pos > self.max_trailer:
                self._done(whole=False)
            return False
        self._done()
        return False


def _framing(cfg: Any, max_body: int) -> _Framing:
    """A :class:`_Framing` with gunicorn's own limits on heads, chunk lines and trailers."""
    fields = cfg.limit_request_fields
    if fields <= 0 or fields > message.MAX_HEADERS:
        fields = message.MAX_HEADERS
    field_size = cfg.limit_request_field_size
    if field_size <= 0:
        field_size = message.DEFAULT_MAX_HEADERFIELD_SIZE
    headers = fields * (field_size + 2) + 4
    line = cfg.limit_request_line
    line = 1024 * 1024 if line == 0 else message.MAX_REQUEST_LINE if line < 0 else line
    return _Framing(line + headers, max_body, field_size, headers)


class _Conn(gthread.TConn):  # type: ignore[misc]  # gunicorn is untyped
    """A connection, with the request the poller is reading on it."""

    def __init__(self, *args: Any, buffered: bool) -> None:
        super().__init__(*args)
        self.buffered = buffered  # read on the poller (else the gthread way, on a thread)
        self.received = bytearray()
        self.framing: _Framing | None = None  # while the poller reads a request
        self.deadline = 0.0
        self.continued = False  # "100 Continue" sent from the poller for this request
        self.whole = False  # the thread's request is in, to its last byte
        self.linger: Callable[[socket.socket], None] | None = None

    def close(self, graceful: bool = False) -> None:
        """Close; a graceful close drains on the poller instead of blocking its loop."""
        if graceful and self.linger is not None:
            self.linger(self.sock)
        else:
            super().close(graceful)


class _Deadline:
    """When one connection's current read or send on a thread must be done, and if it was cut."""

    __slots__ = ("at", "cut", "headers", "sending")

    def __init__(self, at: float, *, headers: bool, sending: bool = False) -> None:
        self.at = at
        self.headers = headers
        self.sending = sending
        self.cut = False


_NEVER: Final = float("inf")


class _Sending:
    """
    An application's answer, each piece of which the client must take within a deadline.

    The deadline runs only while gunicorn sends a piece (and its last bytes): never
    while the application makes the next one, so a slow stream is not cut.
    """

    def __init__(self, answer: Iterable[bytes], deadline: _Deadline, timeout: float) -> None:
        self._answer = answer
        self._deadline = deadline
        self._timeout = timeout

    def __iter__(self) -> Iterator[bytes]:
        deadline, timeout = self._deadline, self._timeout
        deadline.at = _NEVER
        for piece in self._answer:
            deadline.at = time.monotonic() + timeout
            yield piece
            deadline.at = _NEVER  # the application makes the next piece
        deadline.at = time.monotonic() + timeout  # the end of a chunked answer

    def close(self) -> None:
        close = getattr(self._answer, "close", None)
        if close is not None:
            close()


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
    gunicorn's gthread worker, reading each request on its poller before a thread gets it.

    ``header_timeout`` and ``body_timeout`` come from
    :func:`modeldeploy.servers.read_timeouts` (the environment, or 10 s and 30 s),
    the most body bytes buffered from :func:`modeldeploy.servers.max_body_size`.

    .. versionadded:: 0.1.0
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout = read_timeouts()
        self.send_timeout = send_timeout()
        self.max_body_size = max_body_size()
        # bytes of requests still coming in; past the budget only small ones are read
        self._held = 0
        self._budget = max(2 * self.max_body_size, 16 * 1024 * 1024)
        self._paused: dict[_Conn, None] = {}
        # the poller's read deadlines: (deadline, n, conn), stale once conn.deadline moved
        self._reading: list[tuple[float, int, _Conn]] = []
        self._count = itertools.count()
        self._lingering: dict[socket.socket, float] = {}
        # the threads' read deadlines, for what is not buffered
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

    # -- in the main loop: reading requests on the poller ---------------------------

    def accept(self, listener: Any) -> None:
        """Accept a connection onto the poller, which reads its first request."""
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        buffered = not (
            self.cfg.is_ssl
            or self.cfg.proxy_protocol not in ("off", False)
            or negotiation.prior_knowledge_allowed(self.cfg, address)
        )
        conn = _Conn(self.cfg, client, address, listener.getsockname(), buffered=buffered)
        conn.linger = self._linger
        if buffered:
            self._read(conn, b"", time.monotonic() + self.header_timeout)
            return
        # the gthread way: a thread once it sends a byte, closed if it sends none in time
        conn.timeout = time.monotonic() + self.header_timeout
        # murder_pending() expects the earliest deadline first
        bisect.insort(self.pending_conns, conn, key=lambda c: c.timeout)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection sends its next request: read it on the poller."""
        if not getattr(conn, "buffered", False):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read(conn, b"", time.monotonic() + self.header_timeout)

    def _read(self, conn: _Conn, received: bytes, deadline: float) -> None:
        """Read a request on *conn* on the poller, of which *received* is already in."""
        conn.received = bytearray(received)
        self._held += len(received)
        conn.framing = framing = _framing(self.cfg, self.max_body_size)
        conn.continued = False
        if received and framing.scan(conn.received):
            self._dispatch(conn, registered=False)
            return
        self._set_deadline(conn, deadline)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._receive, conn))
        if framing.in_body:
            self._body_started(conn)
        self._receive(conn, conn.sock)  # what is there already, without a trip through select

    def _set_deadline(self, conn: _Conn, deadline: float) -> None:
        conn.deadline = deadline
        heapq.heappush(self._reading, (deadline, next(self._count), conn))

    def _receive(self, conn: _Conn, client: Any) -> None:
        """Take what the socket holds; hand the connection over once its request is in."""
        framing = conn.framing
        if framing is None:  # pragma: no cover  # unregistered before it gets here
            return
        in_body = framing.in_body
        taken = 0
        while taken < _RECV_MAX:
            if self._held >= self._budget and len(conn.received) >= _FREE:
                # requests coming in hold the budget: this large one waits (its deadline
                # runs on) until some are handed over; small ones are still read
                self.poller.unregister(conn.sock)
                self._paused[conn] = None
                break
            try:
                data = conn.sock.recv(min(framing.wants(), _RECV_MAX))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn)
                return
            if not data:  # the client is gone, or half-closed before its request was in
                self._drop(conn)
                return
            taken += len(data)
            self._held += len(data)
            conn.received += data
            if framing.scan(conn.received):
                self._dispatch(conn, registered=True)
                return
        if framing.in_body and not in_body:
            self._body_started(conn)

    def _body_started(self, conn: _Conn) -> None:
        """The head is in, the body is coming: the body deadline, and 100 Continue."""
        framing = conn.framing
        assert framing is not None  # for mypy: called while reading
        self._set_deadline(conn, time.monotonic() + self.body_timeout)
        if framing.expects_continue and not conn.continued:
            conn.continued = True
            with contextlib.suppress(OSError):
                conn.sock.send(_CONTINUE)  # 25 bytes on a fresh socket buffer: all of it

    def _dispatch(self, conn: _Conn, *, registered: bool) -> None:
        """The request is in: off the poller, onto a thread."""
        framing = conn.framing
        assert framing is not None  # for mypy: called while reading
        if registered:
            self.poller.unregister(conn.sock)
        conn.whole = framing.whole
        if framing.expects_continue and framing.whole and not conn.continued:
            conn.continued = True  # the body came without waiting: no 100 Continue due
        self._release(conn)
        self.enqueue_req(conn)

    def _drop(self, conn: _Conn) -> None:
        """Close a connection the poller was reading (the client left)."""
        self._release(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def _release(self, conn: _Conn) -> None:
        """*conn* is no longer read on the poller: its bytes leave the budget."""
        conn.framing = None
        conn.deadline = 0.0
        self._held -= len(conn.received)
        self._paused.pop(conn, None)
        if self._paused and self._held < self._budget:
            for paused in list(self._paused):
                del self._paused[paused]
                self.poller.register(
                    paused.sock, selectors.EVENT_READ, partial(self._receive, paused)
                )

    def _expire(self) -> None:
        """Answer 408 to the requests past their deadline, and close them."""
        now = time.monotonic()
        while self._reading and self._reading[0][0] <= now:
            deadline, _, conn = heapq.heappop(self._reading)
            if conn.deadline != deadline:
                continue  # stale
            got_bytes = bool(conn.received)
            self._release(conn)
            conn.received = bytearray()
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            if not got_bytes:  # an idle connection: closed without a word
                conn.close()
                continue
            with contextlib.suppress(OSError):
                conn.sock.send(_TIMEOUT_RESPONSE)  # fits the fresh socket buffer
            self._linger(conn.sock)
        self._expire_lingering(now)

    def _linger(self, sock: socket.socket) -> None:
        """Close *sock* after its answer: send FIN, drain on the poller, then close.

        gunicorn drains a closing connection with a blocking read of up to 2 s, on
        the main loop: one client that does not close its end stops the loop.
        """
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._drain)
        except (OSError, ValueError, KeyError):
            with contextlib.suppress(OSError):
                sock.close()
            return
        self._lingering[sock] = time.monotonic() + _LINGER_S

    def _drain(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(_LINGER_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data or len(data) == _LINGER_BYTES:
            self._close_lingering(sock)

    def _expire_lingering(self, now: float) -> None:
        late = [sock for sock, at in self._lingering.items() if at <= now]
        for sock in late:
            self._close_lingering(sock)

    def _close_lingering(self, sock: socket.socket) -> None:
        self._lingering.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wait for events, no longer than the earliest read deadline."""
        reading = self._reading
        while reading and reading[0][2].deadline != reading[0][0]:
            heapq.heappop(reading)  # stale: handed over, closed or moved on since
        if reading:
            timeout = max(0.0, min(timeout, reading[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """After an answer: a pipelined request already read is scanned on the poller."""
        if (
            getattr(conn, "buffered", False)
            and not fs.cancelled()
            and fs.exception() is None
            and fs.result() is True
            and conn.parser is not None
        ):
            ahead = conn.parser.unreader.take_buffered()
            if ahead:
                with contextlib.suppress(OSError):
                    conn.sock.setblocking(False)
                self._read(conn, ahead, time.monotonic() + self.header_timeout)
                return
        super().finish_request(conn, fs)

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
        """Serve one connection in a worker thread, from the bytes the poller read."""
        received = getattr(conn, "received", None)
        if received:
            conn.received = bytearray()
            conn.data_ready = True
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(received))
        # a whole request is parsed from memory; the deadline is for what was not buffered
        # (and would catch a request the framing and gunicorn's parser saw differently)
        self._watch(conn, self.header_timeout, headers=True)
        try:
            return super().handle(conn)
        finally:
            self._unwatch(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Answer one request whose headers are in; its body gets its own deadline."""
        if getattr(conn, "continued", False):
            req._expected_100_continue = False  # the poller sent it, or it is not due
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
        if conn is None:
            return app(environ, start_response)
        answer = self._answer(conn, app, environ, start_response)
        wrapper = environ.get("wsgi.file_wrapper")
        sendfile = wrapper is not None and isinstance(answer, wrapper)
        if sendfile:
            return answer  # left to gunicorn's sendfile
        if type(answer) is list:
            # made already (the adapters' answers): the deadline runs from now, with no
            # wrapper to iterate (1.3 -> 0.6 us a request)
            self._watch(conn, self.send_timeout, headers=False, sending=True)
            return answer
        deadline = self._watch(conn, _NEVER, headers=False, sending=True)
        return _Sending(answer, deadline, self.send_timeout)

    def _answer(
        self,
        conn: Any,
        app: Callable[..., Iterable[bytes]],
        environ: dict[str, Any],
        start_response: Any,
    ) -> Iterable[bytes]:
        """Run the application, with the body deadline while it reads a body not buffered."""
        if getattr(conn, "whole", False):
            # the body is in memory: the application never waits for the client
            self._unwatch(conn)
            return app(environ, start_response)
        length_text = environ.get("CONTENT_LENGTH") or ""
        length = int(length_text) if length_text.isascii() and length_text.isdigit() else None
        chunked = environ.get("wsgi.input_terminated") and length is None
        if not length and not chunked:
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

    def _watch(
        self, conn: Any, timeout: float, *, headers: bool, sending: bool = False
    ) -> _Deadline:
        deadline = _Deadline(time.monotonic() + timeout, headers=headers, sending=sending)
        with self._deadlines_lock:
            self._deadlines[conn] = deadline
        return deadline

    def _unwatch(self, conn: Any) -> None:
        with self._deadlines_lock:
            self._deadlines.pop(conn, None)

    # -- in the main loop, after every wait ----------------------------------------

    def murder_keepalived(self, force: bool = False) -> None:
        """Close expired kept-alive connections and late requests, and cut late reads."""
        super().murder_keepalived(force)
        self._expire()
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
            if deadline.sending:
                self.log.warning(
                    "closing a connection to %s: the client did not take its answer within %g s "
                    "(send timeout)",
                    getattr(conn, "client", None),
                    self.send_timeout,
                )
                with contextlib.suppress(OSError):
                    # the thread's blocked send fails (EPIPE): it lets the connection go
                    conn.sock.shutdown(socket.SHUT_RDWR)
                continue
            with contextlib.suppress(OSError):
                if deadline.headers:
                    # the thread is reading headers: nothing else will answer
                    conn.sock.send(_TIMEOUT_RESPONSE, socket.MSG_DONTWAIT)
                # the blocked recv() returns b"": the thread finishes, the app sees a short body
                conn.sock.shutdown(socket.SHUT_RD)
