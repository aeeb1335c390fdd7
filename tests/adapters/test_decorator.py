"""modeldeploy.adapters.decorator: Lambda events, environ dicts and async handlers."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modeldeploy as md
from modeldeploy.adapters.decorator import (
    METHOD_HEADER,
    PATH_HEADER,
    environ_request,
    handler,
    lambda_request,
    lambda_response,
    tuple_response,
)
from modeldeploy.http import HTTPApp
from modeldeploy.testing import EchoPredictor, GatedPredictor
from tests import docs, strategies


def rest_event(
    body: bytes | str | None,
    *,
    method: str = "POST",
    path: str = "/predict",
    headers: dict[str, str] | None = None,
    binary: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """An API Gateway REST API (payload 1.0) proxy event."""
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if binary else body.decode()
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in (headers or {}).items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": {"stage": "prod", "requestId": "abc"},
        "body": body,
        "isBase64Encoded": binary,
        **extra,
    }


def http_api_event(
    body: bytes, *, method: str = "POST", path: str = "/predict", headers: dict[str, str]
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, body always base64."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "a=1",
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def body_of(result: dict[str, Any]) -> bytes:
    body: str = result["body"]
    return base64.b64decode(body) if result["isBase64Encoded"] else body.encode()


class LambdaContext:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="module")
def service() -> Iterator[md.Service]:
    with md.Service(lambda x: x * 2, name="double") as running:
        yield running


@pytest.fixture(scope="module")
def lambda_handler(service: md.Service) -> Any:
    @handler(service, request_from=lambda_request, response_to=lambda_response)
    def predict(event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Answer API Gateway."""
        raise AssertionError("the body of a decorated handler never runs")

    return predict


class TestLambda:
    def test_json_round_trip(self, lambda_handler: Any) -> None:
        event = rest_event(b"[1, 2.5]", headers={"Content-Type": "application/json"})
        result = lambda_handler(event, LambdaContext(5000))
        assert result["statusCode"] == 200
        assert result["isBase64Encoded"] is False
        assert json.loads(result["body"]) == [1, 2.5, 1, 2.5]
        assert result["headers"]["content-type"] == "application/json"
        assert result["headers"]["x-request-id"]

    def test_msgpack_base64_both_ways(self, lambda_handler: Any) -> None:
        event = rest_event(
            msgpack.packb([1, b"\xff"]),
            headers={"content-type": "application/msgpack", "ACCEPT": "application/msgpack"},
            binary=True,
        )
        result = lambda_handler(event, None)
        assert (result["statusCode"], result["isBase64Encoded"]) == (200, True)
        assert result["headers"]["content-type"] == "application/msgpack"
        assert msgpack.unpackb(body_of(result)) == [1, b"\xff", 1, b"\xff"]

    def test_msgpack_numbers(self, lambda_handler: Any) -> None:
        event = http_api_event(
            msgpack.packb(21),
            headers={"content-type": "application/msgpack", "accept": "application/msgpack"},
        )
        result = lambda_handler(event, None)
        assert result["isBase64Encoded"] is True
        assert msgpack.unpackb(body_of(result)) == 42

    def test_the_decorated_function_keeps_its_identity(self, lambda_handler: Any) -> None:
        assert lambda_handler.__name__ == "predict"
        assert lambda_handler.__doc__ == "Answer API Gateway."
        assert list(inspect.signature(lambda_handler).parameters) == ["event", "context"]

    @pytest.mark.parametrize(
        ("event", "status", "code"),
        [
            (rest_event("not base64!", binary=False) | {"isBase64Encoded": True}, 400,
             "decode_error"),
            (rest_event(b"{oops", headers={"content-type": "application/json"}), 400,
             "decode_error"),
            (rest_event(b"1", headers={"content-type": "text/csv"}), 415,
             "unsupported_media_type"),
            (rest_event(b"1", headers={"accept": "image/png"}), 406, "not_acceptable"),
            (rest_event(b"1") | {"body": 12}, 400, "decode_error"),
            (rest_event(b"1") | {"headers": {"accept": 3}}, 400, "decode_error"),
        ],
    )  # fmt: skip
    def test_errors_are_json_responses(
        self, lambda_handler: Any, event: dict[str, Any], status: int, code: str
    ) -> None:
        result = lambda_handler(event, None)
        assert result["statusCode"] == status
        assert result["isBase64Encoded"] is False
        assert json.loads(result["body"])["error"]["code"] == code

    def test_head_through_an_app_gets_no_body(self) -> None:
        with md.Service(lambda x: x, name="m") as service:
            view = handler(
                HTTPApp(service), request_from=lambda_request, response_to=lambda_response
            )(lambda event, context: None)
            get = view(rest_event(b"", method="GET", path="/v2/models/m"), None)
            head = view(rest_event(b"", method="HEAD", path="/v2/models/m"), None)
        assert get["statusCode"] == head["statusCode"] == 200
        assert json.loads(get["body"])["name"] == "m"
        assert head["body"] == ""
        assert head["headers"] == get["headers"]

    def test_not_an_event(self, lambda_handler: Any) -> None:
        result = lambda_handler(["not", "an", "event"], None)
        assert result["statusCode"] == 400
        assert json.loads(result["body"]) == {
            "error": {"code": "decode_error", "message": "the Lambda event is not an object"}
        }

    def test_overload_keeps_retry_after(self) -> None:
        gated = GatedPredictor(timeout=20)
        with md.Service(gated, workers=1, max_queue=1, retry_after=2) as service:
            view = handler(service, request_from=lambda_request, response_to=lambda_response)(
                lambda event, context: None
            )
            try:
                service.submit([1])
                assert gated.entered.wait(10)
                result = view(rest_event(b"[1]"), None)
            finally:
                gated.open()
        assert result["statusCode"] == 503
        assert result["headers"]["Retry-After"] == "2"
        assert json.loads(result["body"])["error"]["code"] == "overloaded"

    def test_lambda_context_remaining_time_is_the_deadline(self) -> None:
        gated = GatedPredictor(timeout=20)
        with md.Service(gated, workers=1) as service:
            view = handler(service, request_from=lambda_request, response_to=lambda_response)(
                lambda event, context: None
            )
            try:
                result = view(rest_event(b"[1]"), LambdaContext(50))
            finally:
                gated.open()
        assert result["statusCode"] == 504
        assert json.loads(result["body"])["error"]["code"] == "deadline_exceeded"

    def test_unexpected_translation_error_is_a_bare_500(
        self, service: md.Service, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(event: Any, context: Any) -> md.Request:
            raise KeyError("secret detail")

        view = handler(service, request_from=broken, response_to=lambda_response)(
            lambda event, context: None
        )
        with caplog.at_level(logging.ERROR, logger="modeldeploy"):
            result = view({}, None)
        assert result["statusCode"] == 500
        assert json.loads(result["body"]) == {
            "error": {"code": "internal", "message": "internal error"}
        }
        assert "secret detail" not in result["body"]
        assert any("unexpected error" in r.message for r in caplog.records)


@pytest.fixture(scope="module")
def view(service: md.Service) -> Iterator[Any]:
    with md.Service(EchoPredictor(), workers=0) as echo:

        @handler(
            HTTPApp([service, echo]), request_from=lambda_request, response_to=lambda_response
        )
        def proxy(event: Any, context: Any) -> Any: ...

        yield proxy


class TestLambdaWithHTTPApp:
    """An HTTPApp target routes by method and path: the whole API behind {proxy+}."""

    def test_health_metadata_and_metrics(self, view: Any) -> None:
        assert (
            view(rest_event(None, method="GET", path="/v2/health/ready"), None)["statusCode"]
            == 200
        )
        metadata = view(rest_event(None, method="GET", path="/v2/models/echo"), None)
        assert json.loads(metadata["body"])["name"] == "echo"
        metrics = view(rest_event(None, method="GET", path="/metrics"), None)
        assert metrics["statusCode"] == 200 and metrics["isBase64Encoded"] is False

    def test_v2_infer_binary_response(self, view: Any) -> None:
        x = np.arange(4, dtype=np.float32)
        header = json.dumps(
            {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [4],
                     "parameters": {"binary_data_size": 16}}
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()  # fmt: skip
        event = http_api_event(
            header + x.tobytes(),
            path="/v2/models/double/infer",
            headers={"inference-header-content-length": str(len(header))},
        )
        result = view(event, None)
        assert result["statusCode"] == 200 and result["isBase64Encoded"] is True
        body = body_of(result)
        json_length = int(result["headers"]["inference-header-content-length"])
        assert np.frombuffer(body[json_length:], "<f4").tolist() == [0, 2, 4, 6]

    def test_routes_and_errors(self, view: Any) -> None:
        packed = view(
            rest_event(
                msgpack.packb("hi"),
                path="/models/echo/predict",
                headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"},
                binary=True,
            ),
            None,
        )
        assert msgpack.unpackb(body_of(packed)) == "hi"
        missing = view(rest_event(b"{}", path="/v2/models/nope/infer"), None)
        assert (missing["statusCode"], json.loads(missing["body"])) == (
            404,
            {"error": "no model named 'nope'"},
        )
        wrong = view(rest_event(None, method="DELETE", path="/v2/health/live"), None)
        assert wrong["statusCode"] == 405

    def test_deadline_travels_as_the_timeout_header(self) -> None:
        gated = GatedPredictor(timeout=20)
        with md.Service(gated, workers=1) as slow:
            view = handler(
                HTTPApp(slow), request_from=lambda_request, response_to=lambda_response
            )(lambda event, context: None)
            try:
                result = view(rest_event(b"[1]"), LambdaContext(50))
            finally:
                gated.open()
        assert result["statusCode"] == 504


class TestTranslators:
    def test_rest_event_fields(self) -> None:
        event = rest_event(
            b"{}",
            method="put",
            path="/x",
            headers={"X-Request-ID": "r1"},
            multiValueQueryStringParameters={"a": ["1", "2"]},
        )
        event["multiValueHeaders"]["Accept"] = ["application/json", "application/msgpack"]
        request = lambda_request(event)
        assert request.headers[METHOD_HEADER] == "PUT"
        assert request.headers[PATH_HEADER] == "/x?a=1&a=2"
        assert request.headers["x-request-id"] == "r1"
        assert request.accept == "application/json, application/msgpack"
        assert request.content_type == "application/json"  # the default
        assert request.deadline is None

    def test_http_api_event_fields(self) -> None:
        request = lambda_request(
            http_api_event(b"\x00\xff", method="get", path="/p", headers={"accept": "*/*"})
        )
        assert (request.body, request.headers[METHOD_HEADER]) == (b"\x00\xff", "GET")
        assert request.headers[PATH_HEADER] == "/p?a=1"

    @given(
        st.binary(max_size=64),
        st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE"]),
        strategies.response_media_types,
    )
    def test_bodies_survive_the_round_trip(self, body: bytes, name: str, media_type: str) -> None:
        event = rest_event(body, headers={name: media_type}, binary=True)
        request = lambda_request(event)
        assert bytes(request.body) == body
        assert request.content_type == (media_type or "application/json")
        result = lambda_response(md.Response(200, {name: media_type}, body))
        assert body_of(result) == body
        if result["isBase64Encoded"] is False:
            assert result["body"] == body.decode("utf-8")

    def test_text_bodies_stay_text(self) -> None:
        for media_type in ["application/json", "text/plain; charset=utf-8", "application/x+json"]:
            result = lambda_response(md.Response(200, {"Content-Type": media_type}, b'{"a":1}'))
            assert (result["isBase64Encoded"], result["body"]) == (False, '{"a":1}')
        binary = lambda_response(md.Response(200, {"content-type": "application/json"}, b"\xff"))
        assert binary["isBase64Encoded"] is True

    def test_environ_request(self) -> None:
        environ = {
            "REQUEST_METHOD": "post",
            "PATH_INFO": "/predict",
            "QUERY_STRING": "q=1",
            "CONTENT_TYPE": "application/msgpack",
            "CONTENT_LENGTH": "3",
            "HTTP_ACCEPT": "application/json",
            "HTTP_X_REQUEST_ID": "abc",
            "wsgi.input": io.BytesIO(b"\x93\x01\x02rest"),
        }
        request = environ_request(environ)
        assert request.body == b"\x93\x01\x02"
        assert (request.content_type, request.accept) == (
            "application/msgpack",
            "application/json",
        )
        assert request.headers["x-request-id"] == "abc"
        assert request.headers[PATH_HEADER] == "/predict?q=1"
        given_body = environ_request(environ, b"[1]")
        assert given_body.body == b"[1]"

    def test_environ_body_limits(self) -> None:
        stream = io.BytesIO(b"x" * 100)
        with pytest.raises(md.PayloadTooLargeError):
            environ_request({"CONTENT_LENGTH": "100", "wsgi.input": stream}, max_body_size=10)
        assert stream.tell() == 0  # refused before reading
        chunked = {"wsgi.input": io.BytesIO(b"y" * 100), "wsgi.input_terminated": True}
        with pytest.raises(md.PayloadTooLargeError):
            environ_request(chunked, max_body_size=10)
        assert environ_request({"wsgi.input": io.BytesIO(b"ignored")}).body == b""
        with pytest.raises(md.DecodeError):
            environ_request({"CONTENT_LENGTH": "5", "wsgi.input": io.BytesIO(b"ab")})
        with pytest.raises(md.DecodeError):
            environ_request({"CONTENT_LENGTH": "x", "wsgi.input": io.BytesIO(b"ab")})

    def test_environ_handler_and_tuple_response(self, service: md.Service) -> None:
        @handler(service, request_from=environ_request, response_to=tuple_response)
        def view(environ: dict[str, Any]) -> tuple[bytes, int, dict[str, str]]: ...

        body, status, headers = view(
            {"CONTENT_LENGTH": "3", "CONTENT_TYPE": "application/json",
             "wsgi.input": io.BytesIO(b"[4]")}
        )  # fmt: skip
        assert (json.loads(body), status, headers["content-type"]) == (
            [4, 4],
            200,
            "application/json",
        )
        body, status, _ = view({"CONTENT_LENGTH": str(10**12), "wsgi.input": io.BytesIO()})
        assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"

    def test_targets(self) -> None:
        with pytest.raises(TypeError, match="Service or an HTTPApp"):
            handler(object(), request_from=lambda_request, response_to=lambda_response)  # type: ignore[arg-type]


class FrameworkRequest:
    """Stands in for an ASGI framework's request (FastAPI/Starlette: async body())."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self._body = body
        self.headers = headers

    async def body(self) -> bytes:
        await asyncio.sleep(0)
        return self._body


class FrameworkResponse:
    def __init__(self, content: bytes, status_code: int, headers: dict[str, str]) -> None:
        self.content, self.status_code, self.headers = content, status_code, headers


async def framework_request(request: FrameworkRequest) -> md.Request:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return md.Request(
        await request.body(),
        headers.get("content-type", "application/json"),
        headers.get("accept", "*/*"),
        headers,
    )


def framework_response(response: md.Response) -> FrameworkResponse:
    return FrameworkResponse(response.body, response.status, dict(response.headers))


class TestAsync:
    def test_async_view_answers_without_blocking_the_loop(self) -> None:
        gated = GatedPredictor(lambda x: [v + 1 for v in x], timeout=10)
        with md.Service(gated, workers=1) as service:

            @handler(service, request_from=framework_request, response_to=framework_response)
            async def predict(request: FrameworkRequest) -> FrameworkResponse: ...

            assert inspect.iscoroutinefunction(predict)

            async def main() -> FrameworkResponse:
                pending = asyncio.ensure_future(predict(FrameworkRequest(b"[1, 2]", {})))
                # the loop must stay free while the model works: this coroutine
                # opens the gate; were the loop blocked, the model would time out
                assert await asyncio.to_thread(gated.entered.wait, 10)
                gated.open()
                return await pending

            response = asyncio.run(main())
        assert isinstance(response, FrameworkResponse)
        assert (response.status_code, json.loads(response.content)) == (200, [2, 3])

    def test_async_view_with_an_http_app_and_workers_0(self) -> None:
        with md.Service(EchoPredictor(), workers=0) as service:
            app = HTTPApp(service)

            @handler(app, request_from=framework_request, response_to=framework_response)
            async def v2_view(request: FrameworkRequest) -> FrameworkResponse: ...

            async def request_with(path: str, method: str, body: bytes) -> FrameworkResponse:
                headers = {METHOD_HEADER: method, PATH_HEADER: path}
                return await v2_view(FrameworkRequest(body, headers))

            ready = asyncio.run(request_with("/v2/health/ready", "GET", b""))
            infer = asyncio.run(
                request_with(
                    "/v2/models/echo/infer",
                    "POST",
                    b'{"inputs":[{"name":"x","datatype":"INT8","shape":[1],"data":[7]}]}',
                )
            )
        assert ready.status_code == 200
        assert json.loads(infer.content)["outputs"][0]["data"] == [7]

    def test_async_errors(self) -> None:
        with md.Service(EchoPredictor(), workers=0) as service:

            @handler(service, request_from=framework_request, response_to=framework_response)
            async def predict(request: FrameworkRequest) -> FrameworkResponse: ...

            bad = asyncio.run(
                predict(FrameworkRequest(b"{", {"Content-Type": "application/json"}))
            )
        assert bad.status_code == 400
        assert json.loads(bad.content)["error"]["code"] == "decode_error"

    def test_async_translator_on_a_sync_view_is_an_error(self, service: md.Service) -> None:
        view = handler(service, request_from=framework_request, response_to=framework_response)(
            lambda request: None
        )
        response = view(FrameworkRequest(b"[1]", {}))
        assert response.status_code == 500


class TestDocs(docs.PageExamples):
    page = "adapters/decorator.md"
    minimum = 2
