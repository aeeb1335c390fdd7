"""modeldeploy.adapters.asgi: the end-to-end suite under uvicorn, and the ASGI protocol."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

import modeldeploy as md
from modeldeploy.adapters import asgi
from modeldeploy.http import HTTPApp

from .conftest import BrokenPredictor, SlowStartPredictor
from .e2e import E2E


@pytest.mark.integration
class TestUvicorn(E2E):
    server_kind = "uvicorn"


# -- the ASGI protocol, driven in-process ---------------------------------------------------


class Driver:
    """Plays the server: feeds messages to an ASGI app, records what it sends."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.incoming = list(messages)
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.received += 1
        if not self.incoming:
            return {"type": "http.disconnect"}
        return self.incoming.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def run(self, app: Any, scope: dict[str, Any]) -> Driver:
        asyncio.run(app(scope, self.receive, self.send))
        return self

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def http_scope(
    path: str, method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": headers or [],
    }


def chunks(*parts: bytes) -> list[dict[str, Any]]:
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def double(x: Any) -> Any:
    return [2 * v for v in x]


@pytest.fixture
def service() -> Any:
    with md.Service(double, name="m", workers=1) as service:
        yield service


class TestHTTP:
    def test_body_in_several_messages(self, service: md.Service) -> None:
        driver = Driver(chunks(b"[1,", b" 2", b"]")).run(asgi(service), http_scope("/predict"))
        assert (driver.status, driver.body) == (200, b"[2,4]")
        assert driver.headers[b"content-length"] == b"5"
        assert driver.headers[b"content-type"] == b"application/json"
        assert all(name == name.lower() for name in driver.headers)

    def test_declared_length_over_the_limit_reads_nothing(self, service: md.Service) -> None:
        app = asgi(HTTPApp(service, max_body_size=4))
        scope = http_scope("/predict", headers=[(b"content-length", b"5")])
        driver = Driver(chunks(b"[1,2]")).run(app, scope)
        assert driver.received == 0
        assert driver.status == 413
        assert json.loads(driver.body)["error"]["code"] == "payload_too_large"

    def test_streamed_body_over_the_limit_stops_reading(self, service: md.Service) -> None:
        app = asgi(HTTPApp(service, max_body_size=4))
        driver = Driver(chunks(b"[1,", b"2,", b"3]", b"   ")).run(
            app, http_scope("/v2/models/m/infer")
        )
        assert driver.received == 2
        assert driver.status == 413
        assert json.loads(driver.body) == {"error": "body of 5 bytes is over the limit of 4"}

    @pytest.mark.parametrize("path", ["/v2/health/ready", "/v2/models/m"])
    def test_head_gets_the_get_headers_and_no_body(self, service: md.Service, path: str) -> None:
        get = Driver(chunks(b"")).run(asgi(service), http_scope(path, "GET"))
        head = Driver(chunks(b"")).run(asgi(service), http_scope(path, "HEAD"))
        assert (head.status, head.headers, head.body) == (get.status, get.headers, b"")

    def test_head_refused_for_its_length_gets_no_body_either(self, service: md.Service) -> None:
        app = asgi(HTTPApp(service, max_body_size=4))
        scope = http_scope("/v2/health/ready", "HEAD", [(b"content-length", b"5")])
        driver = Driver(chunks(b"")).run(app, scope)
        assert driver.status == 413
        assert driver.body == b""
        assert int(driver.headers[b"content-length"]) > 0  # the length a GET would carry

    def test_client_gone_gets_no_answer(self, service: md.Service) -> None:
        for messages in ([], chunks(b"[1,", b"2]")[:1]):
            driver = Driver(messages).run(asgi(service), http_scope("/predict"))
            assert driver.sent == []

    def test_headers_and_query_reach_the_app(self) -> None:
        seen: dict[str, Any] = {}

        class Recorder(HTTPApp):
            async def acall(
                self, method: str, path: str, headers: Any, body: Any, query: str = ""
            ) -> md.Response:
                seen.update(method=method, path=path, headers=headers, body=body, query=query)
                return md.Response(201, {"X-Thing": "1"}, b"ok")

        scope = http_scope("/anything", "PUT", [(b"accept", b"*/*"), (b"x-a", b"\xe9")])
        scope["query_string"] = b"a=1"
        driver = Driver(chunks(b"data")).run(asgi(Recorder(md.Service(double))), scope)
        assert seen == {
            "method": "PUT", "path": "/anything", "headers": {"accept": "*/*", "x-a": "\xe9"},
            "body": b"data", "query": "a=1",
        }  # fmt: skip
        assert (driver.status, driver.headers[b"x-thing"], driver.body) == (201, b"1", b"ok")

    def test_more_header_names_than_the_cache_holds(self) -> None:
        seen: list[dict[str, str]] = []

        class Recorder(HTTPApp):
            async def acall(
                self, method: str, path: str, headers: Any, body: Any, query: str = ""
            ) -> md.Response:
                seen.append(dict(headers))
                return md.Response(200, {f"X-Out-{i}": str(i) for i in range(300)}, b"")

        sent = [(f"x-in-{i}".encode(), str(i).encode()) for i in range(300)]
        app = asgi(Recorder(md.Service(double)))
        for _ in range(2):  # the second time, part of the names come from the cache
            driver = Driver(chunks(b"")).run(app, http_scope("/p", "POST", sent))
            assert len(driver.headers) == 301 and driver.headers[b"x-out-299"] == b"299"
        assert seen[0] == seen[1] == {f"x-in-{i}": str(i) for i in range(300)}

    def test_websocket_is_refused(self, service: md.Service) -> None:
        driver = Driver([{"type": "websocket.connect"}]).run(asgi(service), {"type": "websocket"})
        assert driver.sent == [{"type": "websocket.close", "code": 1003}]


LIFESPAN = ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})


class TestLifespan:
    def test_starts_and_closes(self) -> None:
        service = md.Service(double, name="m")
        driver = Driver(list(LIFESPAN)).run(asgi(service), {"type": "lifespan"})
        assert [m["type"] for m in driver.sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        assert service.state is md.State.CLOSED

    def test_a_started_service_is_kept_then_closed(self, service: md.Service) -> None:
        states = []

        class Watching(Driver):
            async def receive(self) -> dict[str, Any]:
                states.append(service.state)
                return await super().receive()

        driver = Watching(list(LIFESPAN)).run(asgi(service), {"type": "lifespan"})
        assert [m["type"] for m in driver.sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        assert states == [md.State.READY, md.State.READY]
        assert service.state is md.State.CLOSED

    def test_startup_failure_is_reported(self) -> None:
        service = md.Service(BrokenPredictor())
        driver = Driver(list(LIFESPAN)).run(asgi(service), {"type": "lifespan"})
        assert driver.sent == [
            {
                "type": "lifespan.startup.failed",
                "message": "model 'broken' failed to load: OSError",
            }
        ]
        assert service.state is md.State.FAILED

    def test_first_request_starts_without_lifespan(self) -> None:
        service = md.Service(double, name="m")
        driver = Driver(chunks(b"[1]")).run(asgi(service), http_scope("/predict"))
        assert (driver.status, driver.body) == (200, b"[2]")
        service.close()

    def test_requests_during_the_first_start_wait_for_it(self) -> None:
        predictor = SlowStartPredictor()
        service = md.Service(predictor, workers=0)
        app = asgi(service)
        drivers = [Driver(chunks(b"[1]")), Driver(chunks(b"[2]"))]

        async def release() -> None:
            await asyncio.to_thread(predictor.loading.wait, 10)
            predictor.open()

        async def scenario() -> None:
            requests = (app(http_scope("/predict"), d.receive, d.send) for d in drivers)
            await asyncio.gather(*requests, release())

        try:
            asyncio.run(scenario())
            assert [(d.status, d.body) for d in drivers] == [(200, b"[1]"), (200, b"[2]")]
        finally:
            predictor.open()
            service.close()


class TestInline:
    def test_computes_on_the_loop_thread(self) -> None:
        threads: list[int] = []

        def record(x: Any) -> Any:
            threads.append(threading.get_ident())
            return x

        async def serve(app: Any) -> int:
            driver = Driver(chunks(b"[1]"))
            await app(http_scope("/predict"), driver.receive, driver.send)
            assert driver.status == 200
            return threading.get_ident()

        with md.Service(record, name="m", workers=0) as service:
            loop_thread = asyncio.run(serve(asgi(service, inline=True)))
            assert threads == [loop_thread]
            other_thread = asyncio.run(serve(asgi(service)))
            assert threads[1] != other_thread  # the default executor, not the loop

    def test_needs_workers_zero(self) -> None:
        with pytest.raises(ValueError, match="inline=True needs workers=0; 'm'"):
            asgi(md.Service(double, name="m", workers=1), inline=True)
