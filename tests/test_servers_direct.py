"""modeldeploy.servers.uvicorn: the direct lane of an inline app, and the ASGI lane beside it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httptools")
pytest.importorskip("uvicorn")

import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from uvicorn.server import ServerState

import modeldeploy as md
from modeldeploy.adapters import asgi
from modeldeploy.http import HTTPApp
from modeldeploy.messages import Response
from modeldeploy.servers import uvicorn as ours
from tests.integration.servers import uvicorn_thread

BODY_TIMEOUT = 0.5  # seconds; short, so that the 408 test stays short


def double(x: Any) -> Any:
    return [2 * v for v in x]


LANES = ["inline", "worker"]  # computed on the event loop, or on a worker thread


class Counted:
    """The ASGI app, counting the requests it takes on the direct lane."""

    def __init__(self, lane: str = "inline", max_body_size: int = 1024) -> None:
        self.registry = CollectorRegistry()
        self.service = md.Service(
            double,
            name="double",
            workers=0 if lane == "inline" else 1,
            max_body_size=max_body_size,
            monitors=[md.PrometheusMonitor(registry=self.registry)],
        )
        app = HTTPApp(self.service, registry=self.registry)
        self.app = asgi(app, inline=lane == "inline")
        self.direct = 0
        answer = self.app.direct_answer  # type: ignore[attr-defined]

        def counting(*args: Any) -> Response | None:
            self.direct += 1
            if args[2] == b"[666]":  # a bug in the app, for the test that needs one
                raise RuntimeError("a bug")
            return answer(*args)

        # an instance attribute: the protocol looks the method up on the app object
        self.app.direct_answer = counting  # type: ignore[attr-defined]

    def served(self) -> float:
        return sum(
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == "modeldeploy_requests_total"
            and sample.labels.get("model") == "double"
        )


@contextlib.contextmanager
def running(counted: Counted, **options: Any) -> Iterator[tuple[int, uvicorn.Server]]:
    """A real uvicorn on a free port, in a thread, serving *counted* with our protocol."""
    with uvicorn_thread(
        counted.app, http=ours.HttpToolsProtocol, loop="asyncio", access_log=False,
        lifespan="on", timeout_graceful_shutdown=10, **options,
    ) as running:  # fmt: skip
        yield running


@pytest.fixture(params=LANES)
def server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, Counted, uvicorn.Server]]:
    monkeypatch.setenv("MODELDEPLOY_BODY_TIMEOUT", str(BODY_TIMEOUT))
    counted = Counted(request.param)
    with running(counted) as (port, server):
        yield port, counted, server


def post(body: bytes, *headers: str, path: str = "/predict") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def parse(data: bytes) -> tuple[list[Answer], bytes]:
    """The whole answers at the start of *data* (content-length framed), and the rest."""
    answers = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            answers.append(Answer(status, headers, b""))
            data = rest
            continue
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            break
        answers.append(Answer(status, headers, rest[:length]))
        data = rest[length:]
    return answers, data


def exchange(
    port: int, data: bytes, count: int, *, check_close: bool = False
) -> tuple[list[Answer], bool | None]:
    """Send *data* on a new connection; read *count* answers; and whether it then closed.

    Whether it closed is read only with *check_close*: a connection kept open takes
    half a second to tell from a slow close.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        answers: list[Answer] = []
        while len(answers) < count:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} of {count} answers"
            received += chunk
            answers, _ = parse(received)
        if not check_close:
            return answers, None
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        return answers, closed


def test_the_direct_lane_answers_as_the_asgi_cycle_does(server) -> None:
    port, counted, _ = server
    (first,), _ = exchange(port, post(b"[1, 2]"), 1)  # the route is not known yet: ASGI
    assert counted.direct == 0
    (second,), _ = exchange(port, post(b"[1, 2]"), 1)
    assert counted.direct == 1
    assert (first.status, first.body) == (second.status, second.body) == (200, b"[2,4]")
    ignore = {"date", "x-request-id"}
    assert {k: v for k, v in first.headers.items() if k not in ignore} == {
        k: v for k, v in second.headers.items() if k not in ignore
    }
    assert "date" in second.headers and second.headers["x-request-id"]
    (third,), _ = exchange(port, post(b"[3]", "X-Request-Id: mine-7"), 1)
    assert third.headers["x-request-id"] == "mine-7"
    (bad,), closed = exchange(port, post(b"[1,"), 1, check_close=True)
    assert bad.status == 400 and json.loads(bad.body)["error"]["code"] == "decode_error"
    assert not closed  # an error answer keeps the connection
    assert counted.direct == 3
    assert counted.served() == 4  # every answer reached the monitor, the 400 too


def test_pipelined_requests_are_answered_in_order_across_both_lanes(server) -> None:
    port, counted, _ = server
    exchange(port, post(b"[0]"), 1)  # the route is known from now on
    stream = b"".join(
        [
            post(b"[1]"),
            get("/v2/health/live"),  # the ASGI lane
            post(b"[2]"),  # direct, or queued behind the ASGI answer: in order either way
            post(b"[3]", path="/predict?x=1"),  # a query string: the ASGI lane
            post(b"[4]", "Connection: close"),
        ]
    )
    answers, closed = exchange(port, stream, 5, check_close=True)
    assert [a.status for a in answers] == [200] * 5
    assert [a.body for a in answers] == [b"[2]", b"", b"[4]", b"[6]", b"[8]"]
    assert answers[-1].headers.get("connection") == "close"
    assert closed
    assert counted.direct >= 1  # [1]; the rest may queue behind the ASGI answer


def test_a_body_in_pieces_is_answered_and_a_stalled_one_gets_408(server) -> None:
    port, counted, _ = server
    exchange(port, post(b"[0]"), 1)
    request = post(b"[1, 2, 3]")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request[:-4])
        # the server reads what came so far; the rest comes in another segment
        threading.Event().wait(0.05)
        sock.sendall(request[-4:])
        received = b""
        while not parse(received)[0]:
            chunk = sock.recv(65536)
            assert chunk
            received += chunk
    (answer,), _ = parse(received)
    assert (answer.status, answer.body) == (200, b"[2,4,6]")
    assert counted.direct == 1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request[:-4])  # and never the rest
        received = b""
        while chunk := sock.recv(65536):  # the server closes after its 408
            received += chunk
    (late,), _ = parse(received)
    assert late.status == 408
    assert counted.direct == 1


@pytest.mark.parametrize(
    "request_bytes",
    [
        post(b"[1]", "Content-Length: 5000"),  # over max_body_size: 413 unread
        post(b"3\r\n[1]\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
        post(b"[1]", "Expect: 100-continue"),
    ],
    ids=["too-large", "chunked", "expect-100"],
)
def test_what_the_direct_lane_leaves_to_the_asgi_cycle_is_answered(
    server, request_bytes: bytes
) -> None:
    port, counted, _ = server
    exchange(port, post(b"[0]"), 1)
    large = b"5000" in request_bytes
    count = 2 if b"100-continue" in request_bytes else 1
    answers, _ = exchange(port, request_bytes, count)
    final = answers[-1]
    if large:
        assert final.status == 413
    else:
        assert (final.status, final.body) == (200, b"[2]")
    if count == 2:
        assert answers[0].status == 100
    assert counted.direct == 0


def test_http_1_0_is_answered_and_closed(server) -> None:
    port, counted, _ = server
    exchange(port, post(b"[0]"), 1)
    request = post(b"[5]").replace(b"HTTP/1.1", b"HTTP/1.0")
    (answer,), closed = exchange(port, request, 1, check_close=True)
    assert (answer.status, answer.body) == (200, b"[10]")
    assert closed
    assert counted.direct == 1


def test_shutdown_answers_a_direct_request_being_read_then_closes(server) -> None:
    port, counted, uvicorn_server = server
    exchange(port, post(b"[0]"), 1)
    request = post(b"[1, 2]")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request[:-3])
        threading.Event().wait(0.05)  # the headers are read: the direct lane has it
        uvicorn_server.should_exit = True
        for _ in range(200):  # bounded: until the server stops taking connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            threading.Event().wait(0.02)
        else:
            pytest.fail("the server kept accepting connections")
        sock.sendall(request[-3:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    (answer,), _ = parse(received)
    assert (answer.status, answer.body) == (200, b"[2,4]")
    assert answer.headers.get("connection") == "close"
    assert counted.direct == 1


KEEP_ALIVE = 1  # seconds; uvicorn's timeout_keep_alive, short for the test


def test_an_idle_kept_alive_connection_is_closed_silently_and_a_busy_one_is_not() -> None:
    # one lane: both end an answer the same way (on_response_complete arms the wait)
    counted = Counted("inline")
    with running(counted, timeout_keep_alive=KEEP_ALIVE) as (port, _):
        exchange(port, post(b"[0]"), 1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(post(b"[1]"))
            received = b""
            while not parse(received)[0]:
                received += sock.recv(65536)
            # kept alive: a second request on it is answered
            sock.sendall(post(b"[2]"))
            while len(parse(received)[0]) < 2:
                received += sock.recv(65536)
            answered = len(received)
            while chunk := sock.recv(65536):  # then idle: closed, with nothing sent
                received += chunk
            assert len(received) == answered
        assert [a.body for a in parse(received)[0]] == [b"[2]", b"[4]"]
        request = post(b"[3]")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(post(b"[1]"))
            received = b""
            while not parse(received)[0]:
                received += sock.recv(65536)
            # the next request's bytes come slowly, across the keep-alive timeout:
            # the connection is no longer idle once its first byte is in
            for piece in (request[:5], request[5:20], request[20:]):
                threading.Event().wait(KEEP_ALIVE * 0.6)
                sock.sendall(piece)
            while len(parse(received)[0]) < 2:
                chunk = sock.recv(65536)
                assert chunk, "closed as idle while a request was coming in"
                received += chunk
        assert parse(received)[0][1].body == b"[6]"
    assert counted.direct == 4


def test_a_bug_in_the_direct_answer_is_a_500_and_the_connection_goes_on(server) -> None:
    port, _, _ = server
    exchange(port, post(b"[0]"), 1)
    (bug, after), closed = exchange(port, post(b"[666]") + post(b"[1]"), 2, check_close=True)
    assert bug.status == 500
    assert json.loads(bug.body)["error"]["code"] == "internal"
    assert (after.status, after.body) == (200, b"[2]")
    assert not closed


def test_a_client_that_leaves_before_its_answer_takes_nothing_down(server) -> None:
    port, counted, _ = server
    exchange(port, post(b"[0]"), 1)
    for _ in range(20):  # gone before the model answers, or right after: either way
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(post(b"[1]") * 3)
    (answer,), _ = exchange(port, post(b"[21]"), 1)
    assert (answer.status, answer.body) == (200, b"[42]")
    assert counted.direct >= 21  # each connection's first request took the direct lane


@pytest.mark.parametrize(
    "headers",
    [{"x-bad": "a\r\nset-cookie: x=1"}, {"x-bad": "a\nb"}, {"x-version": "\u0394"}],
    ids=["crlf", "lf", "not-latin-1"],
)
def test_a_header_that_would_split_the_answer_is_never_sent(headers: dict[str, str]) -> None:
    response = Response(200, {"content-type": "application/json", **headers}, b"[1]")
    head, body = ours._encode(response, [(b"date", b"today")], True)
    assert head.startswith(b"HTTP/1.1 500 ")
    assert b"connection: close" in head and b"x-bad" not in head
    assert int(parse(head + body)[0][0].headers["content-length"]) == len(body)


def test_an_answer_s_head_carries_the_server_headers_then_the_answer_s() -> None:
    response = Response(201, {"content-type": "application/json", "x-request-id": "r1"}, b"{}")
    head, body = ours._encode(response, [(b"date", b"today")], False)
    assert head == (
        b"HTTP/1.1 201 Created\r\ndate: today\r\ncontent-type: application/json\r\n"
        b"x-request-id: r1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
    )
    assert body == b"{}"


# -- any request stream, cut anywhere --------------------------------------------------


class Transport(asyncio.Transport):
    """A transport that keeps what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.sent += data

    def writelines(self, data: Any) -> None:
        for item in data:
            self.write(item)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


# (request bytes, expected status, expected body)
_REQUESTS = st.one_of(
    st.lists(st.integers(-100, 100), max_size=4).map(
        lambda xs: (
            post(json.dumps(xs).encode()),
            200,
            json.dumps([2 * x for x in xs], separators=(",", ":")),
        )
    ),
    st.just((get("/v2/health/live"), 200, "")),
    st.just((post(b"[1,"), 400, None)),
    st.just((post(b"[7]", path="/predict?q=1"), 200, "[14]")),
    st.just((post(b"[1]", path="/nowhere"), 404, None)),
)


@pytest.mark.parametrize("lane", LANES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(_REQUESTS, min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
    warm=st.booleans(),
)
def test_any_stream_cut_anywhere_is_answered_in_order(
    lane: str, requests: list[tuple[bytes, int, str | None]], cuts: list[int], warm: bool
) -> None:
    counted = Counted(lane)
    # a worker's answer comes from its thread: the loop waits a little for it
    pause = 0.0 if lane == "inline" else 0.001
    stream = b"".join(r for r, _, _ in requests)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points) if b > a]

    async def main() -> bytes:
        config = uvicorn.Config(
            counted.app, http=ours.HttpToolsProtocol, lifespan="off", access_log=False
        )
        config.load()
        state = ServerState()
        if warm:  # the model route known before: the direct lane from the first request
            first = Transport()
            one = ours.HttpToolsProtocol(config=config, server_state=state, app_state={})
            one.connection_made(first)
            one.data_received(post(b"[0]"))
            for _ in range(2000):  # bounded: the ASGI task answers within a few rounds
                if parse(bytes(first.sent))[0]:
                    break
                await asyncio.sleep(pause)
        transport = Transport()
        protocol = ours.HttpToolsProtocol(config=config, server_state=state, app_state={})
        protocol.connection_made(transport)
        for chunk in chunks:
            protocol.data_received(chunk)
            for _ in range(3):
                await asyncio.sleep(0)
        for _ in range(5000):  # bounded: every queued ASGI answer runs in a few rounds each
            if len(parse(bytes(transport.sent))[0]) == len(requests):
                break
            await asyncio.sleep(pause)
        protocol.connection_lost(None)
        return bytes(transport.sent)

    try:
        counted.service.start()
        sent = asyncio.run(main())
    finally:
        counted.service.close()
    answers, rest = parse(sent)
    assert rest == b""
    assert [a.status for a in answers] == [status for _, status, _ in requests]
    for answer, (_, _, body) in zip(answers, requests, strict=True):
        if body is not None:
            assert answer.body.decode() == body
    if warm and requests[0][1] == 200 and requests[0][0].startswith(b"POST /predict "):
        assert counted.direct >= 1


SEND_TIMEOUT = 0.5  # seconds; short, so that the send deadline's test stays short
BIG = 4 * 1024 * 1024  # float32 zeros: a 16 MiB JSON answer, far over a socket's buffers


class _Warnings(logging.Handler):
    """The modeldeploy logger's warnings, and an event per send-deadline warning."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.cut = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        if "send timeout" in record.getMessage():
            self.cut.release()


@pytest.mark.parametrize("lane", LANES)
def test_a_client_that_takes_no_answer_is_let_go_with_its_memory(
    lane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    np = pytest.importorskip("numpy")
    zeros = np.zeros(BIG, dtype=np.float32)
    monkeypatch.setenv("MODELDEPLOY_SEND_TIMEOUT", str(SEND_TIMEOUT))
    service = md.Service(lambda x: zeros, name="big", workers=0 if lane == "inline" else 1)
    app = asgi(HTTPApp(service), inline=lane == "inline")
    warnings = _Warnings()
    logger = logging.getLogger("modeldeploy")
    logger.addHandler(warnings)
    try:
        with uvicorn_thread(
            app, http=ours.HttpToolsProtocol, loop="asyncio", access_log=False, lifespan="on"
        ) as (port, _):
            # the first request takes the ASGI cycle, the second the direct lane
            for _ in range(2):
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    sock.connect(("127.0.0.1", port))
                    sock.sendall(post(b"[1]"))
                    # the server gives up on the client: bounded wait for its warning
                    assert warnings.cut.acquire(timeout=SEND_TIMEOUT + 10)
                    got = b""
                    sock.settimeout(10)
                    with contextlib.suppress(ConnectionResetError):
                        while chunk := sock.recv(1 << 16):
                            got += chunk
                    assert 0 < len(got) < BIG * 4  # a part, then the connection's end
            # a client that reads gets all of it, however long it is
            (answer,), _ = exchange(port, post(b"[1]"), 1)
            assert answer.status == 200 and len(answer.body) == 4 * BIG - 1 + 2
    finally:
        logger.removeHandler(warnings)
