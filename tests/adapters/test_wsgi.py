"""modeldeploy.adapters.wsgi: the end-to-end suite under gunicorn, and PEP 3333."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

import modeldeploy as md
from modeldeploy.adapters import wsgi
from modeldeploy.http import HTTPApp

from .conftest import BrokenPredictor
from .e2e import E2E


@pytest.mark.integration
class TestGunicornSync(E2E):
    server_kind = "gunicorn-sync"


@pytest.mark.integration
class TestGunicornGthread(E2E):
    server_kind = "gunicorn-gthread"


# -- PEP 3333, in-process under wsgiref's validator -------------------------------------------


def double(x: Any) -> Any:
    return [2 * v for v in x]


@pytest.fixture
def service() -> Iterator[md.Service]:
    with md.Service(double, name="m", workers=0) as service:
        yield service


def call(
    app: Any,
    path: str,
    body: bytes = b"",
    method: str = "POST",
    validate: bool = True,
    **environ: Any,
) -> tuple[str, dict[str, str], bytes]:
    """Run one request (through wsgiref.validate): status line, headers, body."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(env)
    env.update(environ)
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.extend([status, dict(headers)])
        return lambda data: None

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # wsgiref.validate warns on a broken app
        result = (validator(app) if validate else app)(env, start_response)
        try:
            data = b"".join(result)
        finally:
            if validate:
                result.close()  # type: ignore[attr-defined]
    return started[0], started[1], data


class TestPEP3333:
    def test_predict(self, service: md.Service) -> None:
        status, headers, body = call(wsgi(service), "/predict", b"[1, 2]", HTTP_ACCEPT="*/*")
        assert (status, body) == ("200 OK", b"[2,4]")
        assert headers["Content-Length"] == "5"
        assert headers["content-type"] == "application/json"

    def test_headers_reach_the_app(self) -> None:
        seen: dict[str, Any] = {}

        class Recorder(HTTPApp):
            def __call__(
                self, method: str, path: str, headers: Any, body: Any, query: str = ""
            ) -> md.Response:
                seen.update(method=method, path=path, headers=headers, body=body, query=query)
                return md.Response(418, {"X-Thing": "1", "Content-Type": "text/plain"}, b"")

        status, headers, _ = call(
            wsgi(Recorder(md.Service(double))), "/caf\u00c3\u00a9", b"xy", method="PUT",
            QUERY_STRING="a=1", HTTP_X_REQUEST_ID="abc", HTTP_ACCEPT="*/*",
        )  # fmt: skip
        assert status == "418 I'm a Teapot"
        assert headers["X-Thing"] == "1"
        assert seen["method"] == "PUT"
        assert seen["path"] == "/caf\u00e9"  # PEP 3333 latin-1 back to UTF-8
        assert seen["query"] == "a=1"
        assert seen["body"] == b"xy"
        assert {k: seen["headers"][k] for k in ("x-request-id", "accept", "content-type")} == {
            "x-request-id": "abc", "accept": "*/*", "content-type": "application/json",
        }  # fmt: skip

    def test_declared_length_over_the_limit_reads_nothing(self, service: md.Service) -> None:
        stream = io.BytesIO(b"[1, 2, 3]")
        status, _, body = call(
            wsgi(HTTPApp(service, max_body_size=4)), "/predict", b"", CONTENT_LENGTH="9",
            **{"wsgi.input": stream},
        )  # fmt: skip
        assert status == "413 Request Entity Too Large"
        assert json.loads(body)["error"]["code"] == "payload_too_large"
        assert stream.tell() == 0

    def test_chunked_body_is_read_up_to_the_limit(self, service: md.Service) -> None:
        app = wsgi(HTTPApp(service, max_body_size=6))
        ok = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
        assert call(app, "/predict", b"[1, 2]", **ok)[2] == b"[2,4]"
        stream = io.BytesIO(b"[1, 2, 3]" + b" " * 100)
        status, _, body = call(app, "/v2/models/m/infer", **ok, **{"wsgi.input": stream})
        assert status.startswith("413")
        assert json.loads(body) == {"error": "body is over the limit of 6 bytes"}
        assert stream.tell() == 7

    def test_no_length_no_body(self, service: md.Service) -> None:
        status, _, body = call(
            wsgi(service), "/predict", CONTENT_LENGTH="", **{"wsgi.input": io.BytesIO(b"[1]")}
        )
        assert status.startswith("400")  # an empty body is not JSON
        assert json.loads(body)["error"]["code"] == "decode_error"

    @pytest.mark.parametrize(("length", "message"), [("x", "not a number"), ("10", "shorter")])
    def test_bad_length(self, service: md.Service, length: str, message: str) -> None:
        # wsgiref.validate itself trips over a non-numeric CONTENT_LENGTH
        status, _, body = call(
            wsgi(service), "/predict", b"[1]", validate=length.isdigit(), CONTENT_LENGTH=length
        )
        assert status == "400 Bad Request"
        assert message in json.loads(body)["error"]["message"]

    def test_first_request_starts_the_service(self) -> None:
        service = md.Service(double, name="m", workers=1)
        assert call(wsgi(service), "/predict", b"[3]")[2] == b"[6]"
        assert service.ready()
        service.close()

    def test_start_failure_answers_503(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.ERROR, "modeldeploy"):
            status, _, body = call(wsgi(md.Service(BrokenPredictor())), "/predict", b"[1]")
        assert status == "503 Service Unavailable"
        assert json.loads(body)["error"]["code"] == "not_ready"
        assert "starting model broken failed" in caplog.text
