"""modeldeploy.http: HTTPApp routes, errors and metrics, called in-process."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from prometheus_client import CollectorRegistry, Counter, values
from prometheus_client.parser import text_string_to_metric_families

import modeldeploy as md
from modeldeploy.http import TIMEOUT_HEADER, HTTPApp
from tests import strategies

from .conftest import BrokenPredictor, SlowStartPredictor

SIGNATURE = md.Signature(
    inputs=[md.TensorSpec("x", "float32", (2,))], outputs=[md.TensorSpec("y", "float32", (2,))]
)
INFER = b'{"id": "9", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}'


def double(x: Any) -> Any:
    return np.asarray(x, dtype=np.float32) * 2


@pytest.fixture
def service() -> Iterator[md.Service]:
    with md.Service(md.predictor(double, signature=SIGNATURE), name="m", workers=1) as service:
        yield service


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def app(service: md.Service, registry: CollectorRegistry) -> HTTPApp:
    return HTTPApp(service, registry=registry)


def both(app: HTTPApp, method: str, path: str, body: bytes = b"", **headers: str) -> md.Response:
    """Call the app both ways; they must agree."""
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    sync = app(method, path, headers, body)
    async_ = asyncio.run(app.acall(method, path, headers, body))
    assert (sync.status, sync.body) == (async_.status, async_.body)
    return sync


def error_of(response: md.Response) -> Any:
    assert response.headers["content-type"] == "application/json"
    return json.loads(response.body)["error"]


class TestConstruction:
    def test_needs_a_service(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            HTTPApp([])

    def test_names_must_differ(self) -> None:
        with pytest.raises(ValueError, match="two services are named 'a'"):
            HTTPApp([md.Service(double, name="a"), md.Service(double, name="a")])

    def test_body_limit(self) -> None:
        small = md.Service(double, name="a", max_body_size=10)
        large = md.Service(double, name="b", max_body_size=99)
        assert HTTPApp([small, large]).max_body_size == 99
        assert HTTPApp([small, large], max_body_size=5).max_body_size == 5
        with pytest.raises(ValueError, match="max_body_size"):
            HTTPApp(small, max_body_size=-1)


class TestRoutes:
    def test_health(self, app: HTTPApp) -> None:
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/m/ready"):
            assert (both(app, "GET", path).status, both(app, "GET", path).body) == (200, b"")
        assert both(app, "GET", "/v2/models/m/versions/1/ready").status == 200

    def test_not_ready_is_a_4xx_with_no_body(self) -> None:
        service = md.Service(double, name="m")
        app = HTTPApp(service)
        assert both(app, "GET", "/v2/health/live").status == 200
        assert (
            both(app, "GET", "/v2/health/ready").status,
            app("GET", "/v2", {}, b"").status,
        ) == (
            400,
            200,
        )
        assert both(app, "GET", "/v2/models/m/ready").body == b""
        service.start()
        assert both(app, "GET", "/v2/health/ready").status == 200
        service.close()
        assert both(app, "GET", "/v2/health/live").status == 400

    def test_metadata(self, app: HTTPApp) -> None:
        server = json.loads(both(app, "GET", "/v2").body)
        assert server["name"] == "modeldeploy"
        model = json.loads(both(app, "GET", "/v2/models/m/versions/1").body)
        assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [2]}]

    @pytest.mark.parametrize(
        ("method", "path", "status", "message"),
        [
            ("GET", "/v2/models/other", 404, "no model named 'other'"),
            ("POST", "/v2/models/other/infer", 404, "no model named 'other'"),
            ("GET", "/v2/models/m/versions/7", 404, "model 'm' has no version '7'"),
            ("POST", "/v2/models/m/versions/7/infer", 404, "model 'm' has no version '7'"),
            ("GET", "/v2/models/m/infer", 405, "method not allowed"),
            ("GET", "/v2/models/m/nothing", 404, "not found"),
            ("GET", "/v2/models/m/versions/", 404, "not found"),
            ("GET", "/v2/models//ready", 404, "not found"),
            ("GET", "/v2/models/m/", 404, "not found"),
            ("PUT", "/v2", 405, "method not allowed"),
            ("GET", "/v2/unknown", 404, "not found"),
        ],
    )
    def test_v2_errors(
        self, app: HTTPApp, method: str, path: str, status: int, message: str
    ) -> None:
        response = both(app, method, path)
        assert response.status == status
        assert error_of(response) == message

    @pytest.mark.parametrize(
        ("method", "path", "status", "code"),
        [
            ("POST", "/models/other/predict", 404, "model_not_found"),
            ("GET", "/models/m/predict", 405, "method_not_allowed"),
            ("GET", "/predict", 405, "method_not_allowed"),
            ("POST", "/models/m/other", 404, "not_found"),
            ("POST", "/models/m", 404, "not_found"),
            ("GET", "/", 404, "not_found"),
        ],
    )
    def test_plain_errors(
        self, app: HTTPApp, method: str, path: str, status: int, code: str
    ) -> None:
        response = both(app, method, path)
        assert response.status == status
        assert error_of(response)["code"] == code
        if status == 405:
            assert response.headers["allow"] == "POST"

    def test_predict_routes(self, app: HTTPApp) -> None:
        for path in ("/predict", "/models/m/predict"):
            response = both(app, "POST", path, b"[1, 2]", content_type="application/json")
            assert (response.status, response.body) == (200, b"[2.0,4.0]")

    def test_predict_needs_one_service(self, service: md.Service) -> None:
        app = HTTPApp([service, md.Service(double, name="other")])
        error = error_of(both(app, "POST", "/predict", b"[1, 2]"))
        assert error["code"] == "model_not_found"
        assert "'m', 'other'" in error["message"]  # the models there are

    def test_infer(self, app: HTTPApp) -> None:
        response = both(app, "POST", "/v2/models/m/infer", INFER)
        assert response.headers.keys() == {"content-type", "x-request-id", "x-model-version"}
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.body) == {
            "model_name": "m",
            "model_version": "1",
            "id": "9",
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": [2.0, 4.0]}],
        }

    def test_binary_output_headers_are_lower_case(self, app: HTTPApp) -> None:
        body = INFER[:-1] + b', "parameters": {"binary_data_output": true}}'
        response = both(app, "POST", "/v2/models/m/infer", body)
        length = int(response.headers["inference-header-content-length"])
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.body[length:] == np.array([2, 4], "<f4").tobytes()

    def test_validation_is_a_bad_request_in_v2(self, app: HTTPApp) -> None:
        body = INFER.replace(b'"name": "x"', b'"name": "z"')
        response = both(app, "POST", "/v2/models/m/infer", body)
        assert response.status == 400
        assert error_of(response) == "unexpected input 'z'; the model takes ['x']"
        # the plain route keeps the error's own status
        assert both(app, "POST", "/predict", b"[1, 2, 3]").status == 422

    def test_body_over_the_limit(self, service: md.Service) -> None:
        app = HTTPApp(service, max_body_size=8)
        assert both(app, "POST", "/v2/models/m/infer", INFER).status == 413
        assert error_of(both(app, "POST", "/predict", b"[1, 2, 3, 4]"))["code"] == (
            "payload_too_large"
        )
        assert both(app, "POST", "/predict", memoryview(b"[1, 2]")).status == 200

    def test_a_route_seen_before_answers_as_the_first_time(self, service: md.Service) -> None:
        # model routes are remembered after their first request: the limit, the other
        # methods and the routes that name a version must still be checked every time
        app = HTTPApp(service, max_body_size=40)
        for _ in range(2):
            assert both(app, "POST", "/predict", b"[1, 2]").body == b"[2.0,4.0]"
            assert both(app, "POST", "/predict", b"[" + b"1, " * 20 + b"1]").status == 413
            assert both(app, "HEAD", "/predict").status == 405
            assert both(app, "POST", "/v2/models/m/versions/1/infer", b"{}").status == 400
            assert both(app, "POST", "/v2/models/m/versions/2/infer", b"{}").status == 404
            assert both(app, "POST", "/models/nope/predict", b"[1, 2]").status == 404


class TestDeadlinesAndOverload:
    @pytest.fixture
    def gate(self) -> Iterator[threading.Event]:
        gate = threading.Event()
        yield gate
        gate.set()

    @pytest.fixture
    def blocked(self, gate: threading.Event) -> Iterator[md.Service]:
        def wait(x: Any) -> Any:
            gate.wait(10)
            return x

        service = md.Service(wait, name="m", workers=1, max_queue=4).start()
        yield service
        gate.set()  # before close(), which waits for the blocked requests
        service.close()

    @pytest.mark.parametrize("path", ["/predict", "/v2/models/m/infer"])
    def test_timeout_header(self, blocked: md.Service, path: str) -> None:
        app = HTTPApp(blocked)
        response = both(
            app, "POST", path, INFER if "v2" in path else b"1", **{TIMEOUT_HEADER: "0.01"}
        )
        assert response.status == 504

    @pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", ""])
    def test_bad_timeout_header(self, app: HTTPApp, value: str) -> None:
        for path, body in (("/predict", b"[1, 2]"), ("/v2/models/m/infer", INFER)):
            response = both(app, "POST", path, body, **{TIMEOUT_HEADER: value})
            assert response.status == 400

    def test_overloaded(self, blocked: md.Service, gate: threading.Event) -> None:
        app = HTTPApp(blocked)
        pending = [blocked.submit(i) for i in range(4)]
        for path, body in (("/predict", b"1"), ("/v2/models/m/infer", INFER)):
            response = both(app, "POST", path, body)
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
        gate.set()
        assert [p.result(10) for p in pending] == [0, 1, 2, 3]

    def test_not_ready(self) -> None:
        app = HTTPApp(md.Service(double, name="m"))
        assert error_of(both(app, "POST", "/v2/models/m/infer", INFER)) == "model 'm' is new"
        assert error_of(both(app, "POST", "/predict", b"[1, 2]"))["code"] == "not_ready"


class TestStartServices:
    def test_starts_the_new_services_once(self) -> None:
        started = md.Service(double, name="a", workers=0).start()
        new = md.Service(double, name="b", workers=0)
        app = HTTPApp([started, new])
        try:
            assert app.start_services() is None
            assert new.ready() and started.ready()
            late = app.services["late"] = md.Service(double, name="late", workers=0)
            assert app.start_services() is None
            assert late.state is md.State.NEW  # only the first call starts anything
        finally:
            started.close()
            new.close()

    def test_a_call_during_the_start_waits_for_it(self) -> None:
        # a request reaching a gunicorn thread while another thread starts the
        # model must be answered once it is up, not refused as "starting"
        predictor = SlowStartPredictor()
        service = md.Service(predictor, workers=0)
        app = HTTPApp(service)
        first = threading.Thread(target=app.start_services)
        calling = threading.Event()
        seen: list[Any] = []

        def second() -> None:
            calling.set()
            seen.append(app.start_services())
            seen.append(service.state)

        first.start()
        try:
            assert predictor.loading.wait(10)
            waiter = threading.Thread(target=second)
            waiter.start()
            assert calling.wait(10)
            predictor.open()
            waiter.join(10)
            first.join(10)
            assert seen == [None, md.State.READY]
        finally:
            predictor.open()
            service.close()

    def test_a_failure_is_logged_and_returned(self, caplog: pytest.LogCaptureFixture) -> None:
        broken = md.Service(BrokenPredictor())
        ok = md.Service(double, name="ok", workers=0)
        app = HTTPApp([broken, ok])
        with caplog.at_level(logging.ERROR, "modeldeploy"):
            failure = app.start_services()
        try:
            assert failure == "model 'broken' failed to load: OSError"
            assert "starting model broken failed" in caplog.text
            assert broken.state is md.State.FAILED
            assert ok.ready()  # one failure does not keep the others down
        finally:
            ok.close()


class TestFailures:
    def test_unexpected_exception_is_a_bare_500(
        self, app: HTTPApp, service: md.Service, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(service, "_prepare", boom)
        with caplog.at_level(logging.ERROR, "modeldeploy"):
            response = both(app, "POST", "/v2/models/m/infer", INFER)
        assert (response.status, response.body) == (500, b'{"error":"internal error"}')
        assert "secret detail" in caplog.text
        monkeypatch.setattr(service, "handle", boom)
        monkeypatch.setattr(service, "ahandle", boom)
        response = both(app, "POST", "/predict", b"[1, 2]")
        assert response.status == 500
        assert error_of(response) == {"code": "internal", "message": "internal error"}

    def test_output_that_cannot_be_encoded(self) -> None:
        with md.Service(lambda x: {"y": {1, 2}}, name="m", workers=0) as service:
            response = both(HTTPApp(service), "POST", "/v2/models/m/infer", INFER)
        assert response.status == 500
        assert "BYTES elements must be bytes or str" in error_of(response)

    @given(
        method=strategies.http_methods,
        path=strategies.http_paths,
        headers=strategies.http_headers,
        body=strategies.http_bodies,
    )
    def test_any_request_gets_an_answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> None:
        response = both(_FUZZ_APP, method, path, body, **headers)
        assert 200 <= response.status < 600
        if response.status >= 400 and response.body:
            assert "error" in json.loads(response.body)


_FUZZ_SERVICE = md.Service(md.predictor(double, signature=SIGNATURE), name="m", workers=0).start()
_FUZZ_APP = HTTPApp(_FUZZ_SERVICE, registry=CollectorRegistry())


class TestMetrics:
    def test_exposes_the_registry(self, app: HTTPApp, registry: CollectorRegistry) -> None:
        Counter("things", "Things counted.", registry=registry).inc(3)
        response = both(app, "GET", "/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
        assert families["things"].samples[0].value == 3

    def test_openmetrics_when_asked(self, app: HTTPApp) -> None:
        response = both(app, "GET", "/metrics", accept="application/openmetrics-text")
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.body.endswith(b"# EOF\n")

    def test_multiprocess_mode(
        self, service: md.Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        app = HTTPApp(service)
        # what a Counter in another worker process writes
        value_class = values.MultiProcessValue(process_identifier=lambda: 12345)
        value_class("counter", "jobs", "jobs_total", (), (), "Jobs done.").inc(5)
        response = both(app, "GET", "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
        assert families["jobs"].samples[0].value == 5
        assert "python_info" not in families  # not the default registry
