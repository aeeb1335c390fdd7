"""The gunicorn worker reads requests on its poller: what it must keep doing meanwhile.

Keep-alive and pipelining, requests that come in pieces, ``Expect: 100-continue``, a body
over the limit, and clients that never close after a ``Connection: close`` answer, against
``modeldeploy serve --server gunicorn`` (``modeldeploy.servers.gunicorn.ThreadWorker``).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.servers import Process, free_port
from tests.reliability.apps import BIG_ANSWER, STREAM_PAUSE_S
from tests.reliability.clients import (
    INFER_BODY,
    INFER_PATH,
    children,
    connect,
    rss,
    wait_closed,
)
from tests.reliability.conftest import THREADS, start

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

HEAD = f"POST {INFER_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def by_length() -> bytes:
    return (HEAD + f"Content-Length: {len(INFER_BODY)}\r\n\r\n").encode() + INFER_BODY


def chunked() -> bytes:
    half = len(INFER_BODY) // 2
    return (
        (HEAD + "Transfer-Encoding: chunked\r\n\r\n").encode()
        + b"%x\r\n%s\r\n" % (half, INFER_BODY[:half])
        + b"%x;ext=1\r\n%s\r\n" % (len(INFER_BODY) - half, INFER_BODY[half:])
        + b"0\r\nX-Trailer: 1\r\n\r\n"
    )


GET = b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def responses(sock: socket.socket, count: int) -> list[Answer]:
    """Read *count* answers (each with a Content-Length) off one connection, in order."""
    got = []
    with sock.makefile("rb") as reader:
        for _ in range(count):
            status = int(reader.readline().split(b" ", 2)[1])
            headers = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = reader.read(int(headers.get("content-length", "0")))
            got.append(Answer(status, headers, body))
    return got


@pytest.fixture(scope="module")
def gunicorn() -> Iterator[Process]:
    process = start("gunicorn")
    yield process
    process.kill()


def test_pipelined_requests_are_answered_in_order(gunicorn: Process) -> None:
    with connect(gunicorn.port) as sock:
        sock.sendall(by_length() + GET + chunked() + by_length())
        answers = responses(sock, 4)
    assert [r.status for r in answers] == [200, 200, 200, 200]
    assert all(r.headers.get("connection", "").lower() != "close" for r in answers)


def test_a_request_in_pieces_is_answered(gunicorn: Process) -> None:
    data = chunked()
    with connect(gunicorn.port) as sock:
        for start_ in range(0, len(data), 40):  # within the deadlines, but a piece at a time
            sock.sendall(data[start_ : start_ + 40])
            time.sleep(0.02)
        [answer] = responses(sock, 1)
        # and the connection is kept for the next request
        sock.sendall(by_length())
        [again] = responses(sock, 1)
    assert (answer.status, again.status) == (200, 200)


def test_expect_100_continue_gets_one_interim_answer_before_the_body(gunicorn: Process) -> None:
    head = (HEAD + f"Content-Length: {len(INFER_BODY)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with connect(gunicorn.port) as sock:
        sock.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(INFER_BODY)
        [answer] = responses(sock, 1)  # the final answer, with no second 100 before it
    assert answer.status == 200


def test_a_body_over_the_limit_is_refused_by_its_length(gunicorn: Process) -> None:
    head = (HEAD + f"Content-Length: {(64 << 20) + 1}\r\n\r\n").encode()
    with connect(gunicorn.port) as sock:
        sock.sendall(head)  # and none of the body: the 413 comes from the length alone
        [answer] = responses(sock, 1)
    assert answer.status == 413


def test_clients_that_keep_their_end_open_after_a_close_do_not_stop_the_worker(
    gunicorn: Process,
) -> None:
    # gthread drains such a connection with a blocking read of up to 2 s on its main loop
    close = by_length().replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    lingering = []
    for _ in range(4 * THREADS):
        sock = connect(gunicorn.port)
        sock.sendall(close)
        lingering.append(sock)
    for sock in lingering:
        [answer] = responses(sock, 1)  # read, and never closed until the end
        assert answer.status == 200
    started = time.monotonic()
    for _ in range(10):
        with connect(gunicorn.port) as sock:
            sock.sendall(by_length())
            [answer] = responses(sock, 1)
            assert answer.status == 200
    took = time.monotonic() - started
    for sock in lingering:
        sock.close()
    # blocked, the 10 requests would wait for 16 drains of 2 s each, 32 s
    assert took < 5.0, took


def test_bodies_coming_in_hold_a_bounded_memory(
    monkeypatch: pytest.MonkeyPatch, read_timeouts: None
) -> None:
    # 8 MiB limit: the worker holds at most 16 MiB of bodies still coming in, and 64 KiB
    # of each request beyond that; here 16 clients send 6 MiB each of an 8 MiB body
    monkeypatch.setenv("MODELDEPLOY_MAX_BODY_SIZE", str(8 << 20))
    monkeypatch.setenv("MODELDEPLOY_BODY_TIMEOUT", "3")
    server = start("flask-gunicorn")
    try:
        [worker] = children(server.pid)
        for _ in range(20):  # warm up: the app's first requests allocate
            with connect(server.port) as sock:
                sock.sendall(by_length())
                assert responses(sock, 1)[0].status == 200
        before = rss(worker)
        head = (HEAD + f"Content-Length: {8 << 20}\r\n\r\n").encode()
        senders = [connect(server.port) for _ in range(16)]

        def send(sock: socket.socket) -> None:
            sock.settimeout(2.0)
            with contextlib.suppress(OSError):  # a paused client waits on a full buffer
                sock.sendall(head + b"1" * (6 << 20))

        threads = [threading.Thread(target=send, args=(s,), daemon=True) for s in senders]
        for thread in threads:
            thread.start()
        peak, answered = before, []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            peak = max(peak, rss(worker))
            with connect(server.port) as sock:  # small requests are still read meanwhile
                sock.sendall(by_length())
                answered.append(responses(sock, 1)[0].status)
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=5)
        for sock in senders:
            sock.close()
    finally:
        server.kill()
    assert set(answered) == {200}, answered
    # 96 MiB sent; held unbounded, the worker would grow by about that much
    assert peak - before < 40 << 20, (peak - before) >> 20


def test_idle_kept_alive_connections_and_the_connection_limit_still_hold() -> None:
    server = start("gunicorn", "--keep-alive-timeout", "1", "--max-connections", "5")
    try:
        # a kept-alive connection, idle after its answer, is closed after the keep-alive
        with connect(server.port) as kept:
            kept.sendall(by_length())
            assert responses(kept, 1)[0].status == 200
            took, _ = wait_closed(kept, 1.0 + 1.5)  # gunicorn checks once a second
        assert took is not None, "an idle kept-alive connection is still open"
        # 5 connections are the limit: the worker accepts no 6th until one goes
        held = [connect(server.port) for _ in range(5)]
        with connect(server.port) as sixth:
            sixth.sendall(by_length())
            sixth.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sixth.recv(1)
            for sock in held:
                sock.close()
            sixth.settimeout(10)
            assert responses(sixth, 1)[0].status == 200
    finally:
        server.kill()


SEND_TIMEOUT = 1.0  # seconds a client has to take each piece of its answer


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[Process]:
    """gunicorn with one thread serving ``tests.reliability.apps:answers``."""
    monkeypatch.setenv("MODELDEPLOY_SEND_TIMEOUT", str(SEND_TIMEOUT))
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "-k", "modeldeploy.servers.gunicorn.ThreadWorker",
        "--threads", "1", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        "tests.reliability.apps:answers",
    ]  # fmt: skip
    process = Process(argv, port=port, name="gunicorn, one thread")
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


@pytest.mark.parametrize("path", ["/big", "/big-pieces"])
def test_a_client_that_reads_no_answer_frees_its_thread(one_thread: Process, path: str) -> None:
    # a client that asks for a large answer and reads none of it: without the send
    # deadline the only thread stays blocked in its send for as long as the client likes
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", one_thread.port))
    try:
        reader.sendall(get(path))
        asked = time.monotonic()
        with connect(one_thread.port) as other:
            other.settimeout(SEND_TIMEOUT + 15)
            other.sendall(get("/small"))
            (answer,) = responses(other, 1)
            waited = time.monotonic() - asked
        assert (answer.status, answer.body) == (200, b"ok")
        # the server let the first client go: it gets part of the answer, then the end
        _, got = wait_closed(reader, within=10)
        assert 0 < len(got) < BIG_ANSWER
    finally:
        reader.close()
    assert waited >= SEND_TIMEOUT  # it did wait for the thread
    assert "did not take its answer within" in one_thread.log()


def test_an_answer_the_client_reads_is_not_cut(one_thread: Process) -> None:
    with connect(one_thread.port) as sock:
        sock.settimeout(30)
        sock.sendall(get("/big"))
        (answer,) = responses(sock, 1)
        assert len(answer.body) == BIG_ANSWER
        # the deadline runs while a piece is sent, not while the app makes the next one
        sock.sendall(get("/stream"))
        started = time.monotonic()
        (streamed,) = responses(sock, 1)
    assert streamed.body == b"ab" and time.monotonic() - started >= STREAM_PAUSE_S
    assert "did not take its answer" not in one_thread.log()
