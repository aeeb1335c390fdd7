"""modeldeploy.testing: the in-process client, the pytest plugin, the strategies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import flask
import pytest
from hypothesis import given

import modeldeploy as md
from modeldeploy.adapters.flask import blueprint
from modeldeploy.testing import EchoPredictor, RecordingMonitor, client
from modeldeploy.testing import strategies as package_strategies
from tests import docs, strategies


class _FailingLoad(EchoPredictor):
    def load(self) -> None:
        raise RuntimeError("weights are missing")


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
class TestClient:
    def test_answers_through_the_adapter(self, interface):
        service = md.Service(lambda x: 2 * x, name="double")
        with client(service, interface=interface) as http:
            assert service.state is md.State.READY  # started on entry
            assert http.post("/predict", json=21).json() == 42
            assert http.get("/v2/health/live").status_code == 200
            assert http.get("/v2/models/double").json()["name"] == "double"
            refused = http.post(
                "/predict", content=b"[1", headers={"content-type": "application/json"}
            )
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "decode_error"
        assert service.state is md.State.CLOSED  # closed on exit

    def test_a_model_that_fails_to_load_fails_on_entry(self, interface):
        service = md.Service(_FailingLoad(), name="broken")
        with pytest.raises(RuntimeError, match=r"broken.* failed to load"):
            client(service, interface=interface).__enter__()

    def test_several_services(self, interface):
        double = md.Service(lambda x: 2 * x, name="double")
        upper = md.Service(str.upper, name="upper")
        with client([double, upper], interface=interface) as http:
            assert http.post("/models/double/predict", json=2).json() == 4
            assert http.post("/models/upper/predict", json="a").json() == "A"
            assert http.post("/predict", json=1).status_code == 404


def test_a_host_wsgi_app():
    service = md.Service(lambda x: -x, name="neg")
    app = flask.Flask(__name__)
    app.register_blueprint(blueprint(service, url_prefix="/ml"))
    with client(app, interface="wsgi") as http:
        assert http.post("/ml/predict", json=3).json() == -3
    service.close()


def test_a_raw_asgi_app_without_lifespan_support():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("only http")  # as many small apps do
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with client(app) as http:
        assert http.get("/anything").status_code == 204


def test_refuses_what_it_cannot_serve():
    with pytest.raises(TypeError, match="got int"):
        client(3)
    with pytest.raises(ValueError, match="interface"):
        client(md.Service(abs), interface="grpc")


class TestFixtures:
    def test_modeldeploy_service_is_started(self, modeldeploy_service, recording_monitor):
        service = modeldeploy_service(abs, name="abs", workers=0, monitors=[recording_monitor])
        assert service.state is md.State.READY
        assert service.predict(-2) == 2
        assert [e.code for e in recording_monitor.finished] == ["ok"]

    def test_modeldeploy_client(self, modeldeploy_client, metrics_registry):
        monitor = md.PrometheusMonitor(registry=metrics_registry)
        service = md.Service(abs, name="abs", monitors=[monitor])
        http = modeldeploy_client(md.http.HTTPApp(service, registry=metrics_registry))
        assert http.post("/predict", json=-5).json() == 5
        assert 'code="ok",model="abs"' in http.get("/metrics").text

    def test_fresh_objects(self, recording_monitor, metrics_registry):
        assert isinstance(recording_monitor, RecordingMonitor)
        assert list(metrics_registry.collect()) == []


def test_the_plugin_is_registered_by_its_entry_point(tmp_path):
    """A project that installs modeldeploy gets the fixtures with no import."""
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            def test_served(modeldeploy_service, modeldeploy_client):
                service = modeldeploy_service(lambda x: x + 1, name="inc")
                assert modeldeploy_client(service).post("/predict", json=1).json() == 2
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_tests_use_the_package_strategies():
    assert strategies.msgpack_values is package_strategies.msgpack_values
    assert strategies.nan_equal is package_strategies.nan_equal


@pytest.mark.parametrize("name", ["json", "msgpack", "pickle", "protobuf", "xml"])
def test_for_serializer_round_trips(name):
    serializer = md.serializers.get(name)

    @given(package_strategies.for_serializer(serializer))
    def roundtrip(value):
        assert package_strategies.bit_equal(serializer.loads(serializer.dumps(value)), value) or (
            # XML and protobuf return lists for tuples: none in these data models
            package_strategies.nan_equal(serializer.loads(serializer.dumps(value)), value)
        )

    roundtrip()


def test_for_serializer_by_options():
    assert package_strategies.for_serializer(md.JSON(allow_nan=True)) is (
        package_strategies.json_nan_values
    )
    assert package_strategies.for_serializer("another") is package_strategies.common_values


def test_the_docs_test_file_passes_under_pytest(tmp_path):
    """docs/testing.md's test files, saved as a user would, pass with the plugin."""
    paths = [str(path) for path in docs.write_files("testing.md", tmp_path)]
    assert len(paths) == 2
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def test_without_the_testing_extra_the_plugin_loads_and_the_errors_name_it():
    """pytest loads the plugin wherever modeldeploy is installed: it must import without
    httpx or hypothesis, and the helpers that need them say what to install."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["httpx"] = None
        sys.modules["hypothesis"] = None
        import modeldeploy as md
        import modeldeploy.testing.pytest_plugin
        from modeldeploy.testing import client
        for load in (lambda: client(md.Service(abs)),
                     lambda: __import__("modeldeploy.testing.strategies")):
            try:
                load()
            except ModuleNotFoundError as exc:
                assert "pip install 'modeldeploy[testing]'" in str(exc), exc
            else:
                raise AssertionError("no error")
        print("ok")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.stdout.strip() == "ok", run.stderr
