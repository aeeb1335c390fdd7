"""modeldeploy.adapters.flask: Flask's test client and the real werkzeug server."""

from __future__ import annotations

import gc
import http.client
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import flask
import msgpack
import numpy as np
import pytest
import tritonclient.http as thttp
from prometheus_client import CollectorRegistry
from tritonclient.utils import InferenceServerException
from werkzeug.serving import make_server

import modeldeploy as md
from modeldeploy import v2
from modeldeploy.adapters.flask import blueprint
from modeldeploy.http import HTTPApp
from modeldeploy.testing import EchoPredictor
from tests import docs, strategies
from tests.adapters import conftest as e2e_conftest
from tests.adapters.e2e import E2E, raw

SIGNATURE = md.Signature(
    [md.TensorSpec("x", "float32", (-1, 2))],
    [md.TensorSpec("total", "float32", (-1,)), md.TensorSpec("count", "int64", ())],
)


def summarize(x: np.ndarray) -> dict[str, Any]:
    return {"total": x.sum(axis=1), "count": np.int64(x.shape[0])}


def plain(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def make_app(services: list[md.Service], registry: CollectorRegistry) -> flask.Flask:
    """A Flask app with routes of its own, the services mounted at / and at /ml."""
    app = flask.Flask("host")

    @app.get("/")
    def index() -> str:
        return "the host app"

    @app.post("/hello/<name>")
    def hello(name: str) -> dict[str, str]:
        return {"hello": name}

    shared = HTTPApp(services, registry=registry)
    app.register_blueprint(blueprint(shared))
    app.register_blueprint(blueprint(shared, name="ml", url_prefix="/ml"))
    small = HTTPApp(md.Service(EchoPredictor(), name="small", workers=0), max_body_size=64)
    app.register_blueprint(blueprint(small, name="small", url_prefix="/small"))
    return app


@pytest.fixture(scope="module")
def services() -> Iterator[list[md.Service]]:
    registry = CollectorRegistry()
    monitor = md.PrometheusMonitor(registry=registry)
    found = [
        md.Service(lambda x: x * 2, name="double", monitors=[monitor], workers=1),
        md.Service(md.predictor(summarize, signature=SIGNATURE), name="summary", workers=0),
        md.Service(EchoPredictor(), workers=0),
    ]
    found[0].registry = registry  # type: ignore[attr-defined]
    yield found
    for service in found:
        service.close()


@pytest.fixture(scope="module")
def app(services: list[md.Service]) -> flask.Flask:
    return make_app(services, services[0].registry)  # type: ignore[attr-defined]


@pytest.fixture
def flask_client(app: flask.Flask) -> flask.testing.FlaskClient:
    return app.test_client()


class ThreadedServer:
    """The Flask app under werkzeug's real server, on a free loopback port."""

    def __init__(self, app: flask.Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = headers or {}
            chunked = headers.get("Transfer-Encoding") == "chunked"
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def threaded(app: flask.Flask) -> Iterator[ThreadedServer]:
    running = ThreadedServer(app)
    yield running
    running.stop()


# the end-to-end app of tests/adapters/app.py, mounted in a Flask app of its own
# and served by werkzeug's development server in a process of its own
FLASK_SERVER = """
import sys
import flask
from werkzeug.serving import run_simple
from modeldeploy.adapters.flask import blueprint
from tests.adapters.app import app as http_app

host = flask.Flask("e2e")
host.register_blueprint(blueprint(http_app))
run_simple("127.0.0.1", int(sys.argv[1]), host, threaded=True)
"""


@pytest.fixture(scope="module")
def server() -> Iterator[e2e_conftest.Server]:
    """The E2E server: werkzeug in a subprocess, ready when /v2/health/ready says so."""
    port = e2e_conftest.free_port()
    argv = [sys.executable, "-c", FLASK_SERVER, str(port)]
    with e2e_conftest.spawn("flask", argv, port, lambda: e2e_conftest.http_ready(port)) as process:
        yield e2e_conftest.Server("flask", "127.0.0.1", port, process.pid)


@pytest.fixture
def collect_clients() -> Iterator[None]:
    """Collect closed tritonclient.http clients on this thread.

    Their ``__del__`` uses gevent, which refuses to run on another thread; left to
    the cyclic GC they may be collected on a server thread, failing a later test.
    """
    yield
    gc.collect()


@pytest.fixture(scope="class")
def collect_class_clients() -> Iterator[None]:
    """:func:`collect_clients` for a class-scoped client: runs after it is closed."""
    yield
    gc.collect()


@pytest.mark.integration
@pytest.mark.usefixtures("collect_class_clients")
class TestFlaskE2E(E2E):
    """The end-to-end suite every HTTP server passes, against the Flask blueprint."""

    server_kind = "flask"

    @pytest.mark.parametrize(
        ("method", "path", "status", "allow"), E2E.test_routes.pytestmark[0].args[1]
    )
    def test_routes(
        self,
        server: e2e_conftest.Server,
        method: str,
        path: str,
        status: int,
        allow: str | None,
    ) -> None:
        if path.startswith(("/v2", "/models", "/predict", "/metrics")):
            super().test_routes(server, method, path, status, allow)
            return
        # outside the blueprint's rules the path is the host app's: its own 404 page
        got, headers, _ = raw(server, method, path)
        assert (got, headers["content-type"]) == (status, "text/html; charset=utf-8")


class TestTestClient:
    def test_services_start_on_the_first_request(self, services: list[md.Service]) -> None:
        fresh = md.Service(EchoPredictor(), workers=0)
        app = flask.Flask("fresh")
        app.register_blueprint(blueprint(fresh))
        assert fresh.state is md.State.NEW
        response = app.test_client().get("/v2/health/ready")
        assert response.status_code == 200
        assert fresh.state is md.State.READY
        fresh.close()

    def test_the_host_routes_stay_the_hosts(self, flask_client: flask.testing.FlaskClient) -> None:
        assert flask_client.get("/").text == "the host app"
        assert flask_client.post("/hello/ada").json == {"hello": "ada"}
        missing = flask_client.get("/elsewhere")
        assert missing.status_code == 404 and missing.mimetype == "text/html"

    @pytest.mark.parametrize("prefix", ["", "/ml"])
    def test_predict_with_negotiation(
        self, flask_client: flask.testing.FlaskClient, prefix: str
    ) -> None:
        response = flask_client.post(f"{prefix}/models/double/predict", json=[1, 2.5])
        assert (response.status_code, response.json) == (200, [1, 2.5, 1, 2.5])
        assert response.headers["x-request-id"]
        packed = flask_client.post(
            f"{prefix}/models/double/predict",
            data=msgpack.packb("ab"),
            headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"},
        )
        assert packed.status_code == 200
        assert packed.mimetype == "application/msgpack"
        assert msgpack.unpackb(packed.data) == "abab"

    def test_v2_routes(self, flask_client: flask.testing.FlaskClient) -> None:
        assert flask_client.get("/ml/v2/health/live").status_code == 200
        assert flask_client.head("/ml/v2/health/ready").status_code == 200
        assert flask_client.get("/ml/v2").json["extensions"] == list(v2.EXTENSIONS)
        metadata = flask_client.get("/ml/v2/models/summary/versions/1").json
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
        assert flask_client.get("/ml/v2/models/summary/ready").status_code == 200
        infer = flask_client.post(
            "/ml/v2/models/summary/infer",
            json={
                "id": "q1",
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}
                ],
                "outputs": [{"name": "count"}],
            },
        )
        assert infer.status_code == 200
        assert infer.json["id"] == "q1"
        assert infer.json["outputs"] == [
            {"name": "count", "datatype": "INT64", "shape": [], "data": [2]}
        ]

    @pytest.mark.parametrize(
        ("method", "path", "status", "body"),
        [
            ("GET", "/predict", 405, plain("method_not_allowed", "method not allowed")),
            ("POST", "/predict", 404, plain(  # several services: it names them
                "model_not_found",
                "/predict serves a lone model; this server has 'double', 'summary', 'echo': "
                "POST /models/{name}/predict",
            )),
            ("GET", "/v2/models/nope", 404, {"error": "no model named 'nope'"}),
            ("GET", "/v2/models/summary/versions/7", 404,
             {"error": "model 'summary' has no version '7'"}),
            ("GET", "/v2/unknown", 404, {"error": "not found"}),
            ("POST", "/models/nope/predict", 404,
             plain("model_not_found", "no model named 'nope'")),
        ],
    )  # fmt: skip
    def test_errors_are_json(
        self,
        flask_client: flask.testing.FlaskClient,
        method: str,
        path: str,
        status: int,
        body: Any,
    ) -> None:
        response = flask_client.open(path, method=method)
        assert (response.status_code, response.json) == (status, body)

    def test_bad_bodies(self, flask_client: flask.testing.FlaskClient) -> None:
        broken = flask_client.post(
            "/models/double/predict", data=b"{nope", content_type="application/json"
        )
        assert broken.status_code == 400 and broken.json["error"]["code"] == "decode_error"
        wrong = flask_client.post(
            "/v2/models/summary/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]},
        )
        assert wrong.status_code == 400 and "x" in wrong.json["error"]

    def test_body_over_the_limit_is_refused_before_reading(
        self, flask_client: flask.testing.FlaskClient
    ) -> None:
        ok = flask_client.post("/small/predict", json=[1, 2, 3])
        assert (ok.status_code, ok.json) == (200, [1, 2, 3])
        big = flask_client.post("/small/predict", json=list(range(100)))
        assert big.status_code == 413
        assert big.json["error"]["code"] == "payload_too_large"
        v2_big = flask_client.post("/small/v2/models/small/infer", data=b"x" * 65)
        assert (v2_big.status_code, v2_big.json) == (
            413,
            {"error": "body of 65 bytes is over the limit of 64"},
        )

    def test_the_flask_apps_own_limit_also_applies(self, services: list[md.Service]) -> None:
        app = make_app(services, CollectorRegistry())
        app.config["MAX_CONTENT_LENGTH"] = 8
        response = app.test_client().post("/predict", json=[1, 2, 3, 4, 5])
        assert (
            response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"
        )

    def test_metrics_after_traffic(
        self, flask_client: flask.testing.FlaskClient, services: list[md.Service]
    ) -> None:
        registry = services[0].registry  # type: ignore[attr-defined]

        def count() -> float:
            value = registry.get_sample_value(
                "modeldeploy_requests_total",
                {"model": "double", "version": "1", "code": "ok"},
            )
            return value or 0.0

        before = count()
        for _ in range(3):
            assert flask_client.post("/models/double/predict", json=[1]).status_code == 200
        assert count() == before + 3
        text = flask_client.get("/metrics").text
        assert "modeldeploy_requests_total" in text
        open_metrics = flask_client.get(
            "/ml/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert open_metrics.mimetype == "application/openmetrics-text"
        assert open_metrics.text.endswith("# EOF\n")

    def test_blueprint_names_must_differ(self, services: list[md.Service]) -> None:
        app = flask.Flask("twice")
        app.register_blueprint(blueprint(services[0]))
        with pytest.raises(ValueError, match="modeldeploy"):
            app.register_blueprint(blueprint(services[1]))


@pytest.mark.integration
@pytest.mark.usefixtures("collect_clients")
class TestThreadedServer:
    def test_host_route_and_model_route(self, threaded: ThreadedServer) -> None:
        assert threaded.request("GET", "/")[2] == b"the host app"
        status, headers, body = threaded.request(
            "POST", "/ml/models/double/predict", b"[3]", {"Content-Type": "application/json"}
        )
        assert (status, json.loads(body)) == (200, [3, 3])
        assert headers["content-type"] == "application/json"

    def test_declared_length_over_the_limit_is_refused_unread(
        self, threaded: ThreadedServer
    ) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", threaded.port, timeout=10)
        try:
            # the headers promise a gigabyte that never comes: only an answer
            # given before reading the body can arrive
            conn.putrequest("POST", "/predict")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(10**9))
            conn.endheaders()
            response = conn.getresponse()
            assert response.status == 413
            assert json.loads(response.read())["error"]["code"] == "payload_too_large"
        finally:
            conn.close()

    def test_chunked_body_over_the_limit_is_413(self, threaded: ThreadedServer) -> None:
        chunks = iter([b"[" + b"1," * 40, b"1]"])
        status, _, body = threaded.request(
            "POST",
            "/small/predict",
            chunks,
            {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        )
        assert status == 413
        assert json.loads(body) == {
            "error": {"code": "payload_too_large", "message": "body is over the limit of 64 bytes"}
        }
        status, _, body = threaded.request(
            "POST",
            "/small/predict",
            iter([b"[1,", b"2]"]),
            {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        )
        assert (status, json.loads(body)) == (200, [1, 2])

    def test_tritonclient_http(self, threaded: ThreadedServer) -> None:
        client = thttp.InferenceServerClient(f"127.0.0.1:{threaded.port}")
        try:
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready("summary")
            x = np.arange(6, dtype=np.float32).reshape(3, 2)
            for binary in (True, False):
                tensor = thttp.InferInput("x", [3, 2], "FP32")
                tensor.set_data_from_numpy(x, binary_data=binary)
                result = client.infer(
                    "summary",
                    [tensor],
                    request_id="r9",
                    outputs=[thttp.InferRequestedOutput("total", binary_data=binary)],
                )
                assert result.get_response()["id"] == "r9"
                assert strategies.nan_equal(result.as_numpy("total"), x.sum(axis=1))
                assert result.as_numpy("count") is None
            with pytest.raises(InferenceServerException, match="no model named"):
                client.infer("nope", [tensor])
        finally:
            client.close()

    def test_every_datatype_over_http(self, threaded: ThreadedServer) -> None:
        from tests.adapters.test_grpc import DATATYPES

        client = thttp.InferenceServerClient(f"127.0.0.1:{threaded.port}")
        try:
            for name, array in DATATYPES:
                tensor = thttp.InferInput("x", list(array.shape), name)
                tensor.set_data_from_numpy(array, binary_data=True)
                result = client.infer(
                    "echo",
                    [tensor],
                    outputs=[thttp.InferRequestedOutput("output0", binary_data=True)],
                )
                assert strategies.nan_equal(result.as_numpy("output0"), array), name
        finally:
            client.close()


@pytest.mark.usefixtures("collect_clients")
class TestDocs(docs.PageExamples):
    page = "adapters/flask.md"
    minimum = 2
