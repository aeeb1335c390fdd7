"""Service.handle_then: handle()'s flow for a server driven by callbacks."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modeldeploy as md
from modeldeploy.events import RequestFinished
from modeldeploy.messages import Request, Response, make_request


class Events:
    """A monitor that keeps the requests' end events."""

    def __init__(self) -> None:
        self.ended: list[RequestFinished] = []

    def on_request_start(self, event: object, /) -> None:
        pass

    def on_request_end(self, event: RequestFinished, /) -> None:
        self.ended.append(event)

    def on_batch(self, event: object, /) -> None:
        pass

    def on_model_loaded(self, event: object, /) -> None:
        pass


def request(body: bytes, **headers: str) -> Request:
    return make_request(
        body, "application/json", "*/*", {"content-type": "application/json", **headers}
    )


def answers(service: md.Service, requests: list[Request], *, within: float = 10.0) -> list[Any]:
    """Each request through handle_then on a running loop: (response, called synchronously)."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        got: list[Any] = [None] * len(requests)
        all_in = asyncio.Event()
        thread = threading.get_ident()

        def done_for(i: int, sync: list[bool]) -> Callable[[Response], None]:
            def done(response: Response) -> None:
                assert threading.get_ident() == thread, "done called off the loop's thread"
                assert got[i] is None, "done called twice"
                got[i] = (response, sync[0])
                if all(g is not None for g in got):
                    all_in.set()

            return done

        for i, req in enumerate(requests):
            sync = [True]
            service.handle_then(req, None, done_for(i, sync))
            sync[0] = False
        if not all(g is not None for g in got):
            await asyncio.wait_for(all_in.wait(), within)
        await asyncio.sleep(0.05)  # a second call of done would show up here
        assert loop.is_running()
        return got

    return asyncio.run(main())


def double(x: Any) -> Any:
    return [2 * v for v in x]


@settings(max_examples=25, deadline=None)
@given(bodies=st.lists(st.lists(st.integers(-1000, 1000), max_size=5), min_size=1, max_size=8))
def test_it_answers_as_handle_does(bodies: list[list[int]]) -> None:
    with md.Service(double, name="double", workers=2, max_batch_size=4) as service:
        reqs = [
            request(json.dumps(b).encode(), **{"x-request-id": f"r{i}"})
            for i, b in enumerate(bodies)
        ]
        got = answers(service, reqs)
        expected = [service.handle(r) for r in reqs]
    for (response, sync), want in zip(got, expected, strict=True):
        assert not sync  # computed on a worker: answered later
        assert (response.status, response.body, dict(response.headers)) == (
            want.status,
            want.body,
            dict(want.headers),
        )


def test_a_request_refused_before_the_queue_is_answered_at_once() -> None:
    events = Events()
    with md.Service(double, name="double", workers=1, monitors=[events]) as service:
        ((response, sync),) = answers(service, [request(b"[1,")])
    assert sync
    assert response.status == 400
    assert json.loads(response.body)["error"]["code"] == "decode_error"
    assert [e.code for e in events.ended] == ["decode_error"]


def test_the_models_error_and_a_passed_deadline_are_answered_and_observed() -> None:
    release = threading.Event()

    def model(x: Any) -> Any:
        if x == "fail":
            raise ValueError("no")
        if x == "slow":
            release.wait(10)
        return x

    events = Events()
    with md.Service(model, name="m", workers=1, monitors=[events]) as service:
        try:
            got = answers(
                service,
                [request(b'"fail"'), request(b'"slow"', **{"x-request-timeout": "0.2"})],
            )
        finally:
            release.set()
    (failed, _), (late, _) = got
    assert failed.status == 500
    assert late.status == 504
    assert sorted(e.code for e in events.ended) == ["deadline_exceeded", "prediction_error"]


def test_an_answer_that_fails_to_be_written_keeps_the_rest_of_the_batch() -> None:
    got: list[int] = []

    async def main(service: md.Service) -> None:
        all_in = asyncio.Event()

        def failing(response: Response) -> None:
            raise OSError("the connection broke")

        def keeping(response: Response) -> None:
            got.append(response.status)
            if len(got) == 3:
                all_in.set()

        for i in range(4):
            service.handle_then(request(b"[1]"), None, failing if i == 0 else keeping)
        await asyncio.wait_for(all_in.wait(), 10)

    with md.Service(double, name="double", workers=1, max_batch_size=8) as service:
        asyncio.run(main(service))
    assert got == [200, 200, 200]


def test_it_needs_worker_threads() -> None:
    with md.Service(double, name="double", workers=0) as service:

        async def main() -> None:
            service.handle_then(request(b"[1]"), None, lambda r: None)

        with pytest.raises(RuntimeError, match="worker threads"):
            asyncio.run(main())


def test_a_result_after_its_deadline_is_dropped_not_answered_twice() -> None:
    release = threading.Event()
    computed = threading.Event()

    def model(x: Any) -> Any:
        release.wait(10)
        computed.set()
        return x

    async def main(service: md.Service) -> list[int]:
        calls: list[int] = []
        answered = asyncio.Event()

        def done(response: Response) -> None:
            calls.append(response.status)
            answered.set()

        service.handle_then(request(b"1", **{"x-request-timeout": "0.1"}), None, done)
        await asyncio.wait_for(answered.wait(), 10)
        release.set()  # the model answers now, past the deadline
        for _ in range(200):  # bounded: until the late result has reached the loop
            if computed.is_set():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # its delivery, one loop round after it is computed
        return calls

    with md.Service(model, name="m", workers=1) as service:
        calls = asyncio.run(main(service))
    assert computed.is_set()
    assert calls == [504]
