"""modeldeploy.servers.uvicorn: a response's head is held for its body, never longer."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("uvicorn")


from modeldeploy.servers import uvicorn as ours
from tests.integration.servers import uvicorn_thread

PROTOCOLS = ["H11Protocol", *(["HttpToolsProtocol"] if hasattr(ours, "HttpToolsProtocol") else [])]


class Recording(asyncio.Transport):
    """A transport that keeps what it is asked to send, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []
        self.closing = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.calls.append(("write", (bytes(data),)))

    def writelines(self, data) -> None:  # type: ignore[override]
        self.calls.append(("writelines", tuple(bytes(d) for d in data)))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append(("close", ()))
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


def test_a_head_and_its_body_go_out_in_one_call() -> None:
    async def main() -> list:
        transport = Recording()
        held = ours._HeldWrites(transport, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.calls == []  # held for the body
        held.write(b"body")
        await asyncio.sleep(0)  # the loop comes round: nothing is left to send
        return transport.calls

    assert asyncio.run(main()) == [("writelines", (b"HTTP/1.1 200 OK\r\n\r\n", b"body"))]


def test_a_write_nothing_follows_goes_out_when_the_loop_comes_round() -> None:
    async def main() -> tuple[list, list]:
        transport = Recording()
        held = ours._HeldWrites(transport, asyncio.get_running_loop())
        held.write(b"head")
        before = list(transport.calls)
        await asyncio.sleep(0)
        return before, transport.calls

    before, after = asyncio.run(main())
    assert before == []
    assert after == [("write", (b"head",))]


def test_close_and_write_eof_send_what_is_held_first() -> None:
    async def main() -> tuple[list, int]:
        transport = Recording()
        held = ours._HeldWrites(transport, asyncio.get_running_loop())
        held.write(b"408")
        size = held.get_write_buffer_size()
        held.close()
        await asyncio.sleep(0)  # the round's flush finds nothing more to send
        return transport.calls, size

    calls, size = asyncio.run(main())
    assert size == 3
    assert calls == [("write", (b"408",)), ("close", ())]


# -- a real server ------------------------------------------------------------------


class Streaming:
    """An ASGI app that sends its head, then waits for the client to have read it."""

    def __init__(self) -> None:
        self.head_seen = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.loop = asyncio.get_running_loop()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"transfer-encoding", b"chunked")],
            }
        )
        # no body until the client says it has the head: a held head would stall here
        for _ in range(1000):  # bounded: 10 s at most
            if self.head_seen.is_set():
                break
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})


@pytest.fixture(params=PROTOCOLS)
def streaming_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, Streaming]]:
    app = Streaming()
    protocol = getattr(ours, request.param)
    with uvicorn_thread(app, http=protocol, lifespan="off") as (port, _):
        yield port, app


def test_a_streamed_head_is_not_held_for_a_body_that_waits(streaming_server) -> None:
    port, app = streaming_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:  # the head, while the body is not sent yet
            chunk = sock.recv(4096)
            assert chunk, "the connection closed before the head came"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        assert b"late" not in received
        app.head_seen.set()
        while not received.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(4096)
            assert chunk
            received += chunk
    assert b"late" in received
