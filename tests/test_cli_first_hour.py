"""
``modeldeploy serve`` as a new user first runs it: the README example, apps built by
the adapters, and a model that takes a while to load (issue #11's traps 1, 2 and 6).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldeploy import cli
from modeldeploy.cli.serve import _served, is_asgi_app
from modeldeploy.http import HTTPApp
from tests.conftest import require_tool
from tests.integration.servers import Process, free_port, request, serve

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [5.1, 3.5, 1.4, 0.2]
WITHIN = 20.0  # seconds a server gets to reach a state the test waits for


def readme_example() -> str:
    (example,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return example


def uvicorn_bin() -> str:
    path = str(Path(sys.executable).parent / "uvicorn")
    require_tool(path)
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def predict(port: int, body: object = FEATURES) -> tuple[int, object]:
    status, _, raw = request(
        port, "POST", "/predict", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return status, json.loads(raw)


def wait_for(condition: object, what: str, process: Process) -> None:
    deadline = time.monotonic() + WITHIN
    while not condition():  # type: ignore[operator]
        if process.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen:\n{process.log()}")
        time.sleep(0.05)  # polling interval of a bounded loop


# -- trap 1: the README example, served as its comment says --------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "command", ["modeldeploy serve myapp:service", "modeldeploy serve myapp:app", "uvicorn"]
)
def test_readme_example_serves_as_written(tmp_path: Path, command: str) -> None:
    (tmp_path / "myapp.py").write_text(readme_example())
    if command == "uvicorn":
        port = free_port()
        argv = [uvicorn_bin(), "myapp:app", "--port", str(port)]
        process = Process(argv, port=port, name="uvicorn myapp:app", cwd=tmp_path)
        process.wait_ready()
    else:
        process = serve(command.split()[-1], cwd=tmp_path, name=command)
    try:
        status, scores = predict(process.port)
        assert status == 200, scores
        assert isinstance(scores, list) and len(scores) == 3
    finally:
        process.kill()


CLOSED_AT_IMPORT = """
import modeldeploy as md
from modeldeploy.adapters import asgi

service = md.Service(lambda x: x, name="score")
app = asgi(service)
with service:                      # the old README: closes the service at import
    service.predict(1)
"""

FAILED_AT_IMPORT = """
import modeldeploy as md

class Broken:
    name, version, signature = "broken", "1", None
    def load(self):
        raise OSError("weights missing")
    def predict(self, batch):
        return batch

service = md.Service(Broken())
try:
    service.start()
except md.ModelLoadError:
    pass
"""


CLOSED = "model 'score' is closed and cannot be served"
FAILED = "model 'broken' failed to start before it was served"


@pytest.mark.parametrize(
    ("source", "attr", "message"),
    [
        (CLOSED_AT_IMPORT, "service", CLOSED),
        (CLOSED_AT_IMPORT, "app", CLOSED),
        (FAILED_AT_IMPORT, "service", FAILED),
    ],
)
def test_cli_refuses_a_service_that_cannot_answer(
    tmp_path: Path, source: str, attr: str, message: str
) -> None:
    (tmp_path / "myapp.py").write_text(source)
    result = run_cli("serve", f"myapp:{attr}", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # what came before is the import's own log
    assert last.startswith("modeldeploy serve: error: ")
    assert message in last
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_uvicorn_refuses_a_closed_service_at_startup(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(CLOSED_AT_IMPORT)
    result = subprocess.run(
        [uvicorn_bin(), "myapp:app", "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0  # uvicorn's startup failure, not a server answering 503
    assert "model 'score' is closed and cannot be served" in result.stderr
    assert "if __name__ == '__main__':" in result.stderr  # what to do about it


# -- trap 2: apps built by the adapters, and any ASGI app ---------------------------------


APPS = """
import modeldeploy as md
from modeldeploy.adapters import asgi, wsgi

service = md.Service(lambda x: 2 * x, name="double", workers=0)
asgi_app = asgi(service)
wsgi_app = wsgi(md.Service(lambda x: 3 * x, name="triple", workers=0))


async def raw(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"raw asgi"})


class Raw:
    async def __call__(self, scope, receive, send):
        await raw(scope, receive, send)


raw_instance = Raw()


async def async_model(x):
    return x
"""


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "apps_module.py").write_text(APPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("apps_module", None)


@pytest.mark.parametrize(("attr", "model"), [("asgi_app", "double"), ("wsgi_app", "triple")])
def test_adapter_apps_are_served_as_their_http_app(apps: Path, attr: str, model: str) -> None:
    app = cli.resolve(f"apps_module:{attr}")
    assert isinstance(app, HTTPApp) and list(app.services) == [model]
    assert app is getattr(sys.modules["apps_module"], attr).app


@pytest.mark.parametrize("attr", ["raw", "raw_instance"])
def test_any_asgi_app_is_served_as_it_is(apps: Path, attr: str) -> None:
    assert _served(f"apps_module:{attr}") is getattr(sys.modules["apps_module"], attr)


def test_an_async_model_is_not_taken_for_an_app(apps: Path) -> None:
    module = sys.modules.get("apps_module") or __import__("apps_module")
    assert not is_asgi_app(module.async_model)
    assert is_asgi_app(module.raw)


@pytest.mark.integration
def test_cli_serves_an_asgi_app(apps: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "modeldeploy", "serve", "apps_module:raw", "--port", str(port)]
    process = Process(argv, port=port, name="raw asgi", cwd=apps)
    try:

        def answers() -> bool:
            try:
                return request(port, "GET", "/")[2] == b"raw asgi"
            except OSError:
                return False

        wait_for(answers, "the raw ASGI app answering", process)
    finally:
        process.kill()


# -- trap 6: bind first, then load ------------------------------------------------------


SLOW_LOAD = """
import os

import modeldeploy as md


class Slow:
    name, version, signature = "slow", "1", None

    def load(self):
        with open(os.environ["RELEASE_FIFO"]) as fifo:  # blocks until the test writes
            fifo.read()

    def predict(self, batch):
        return batch


service = md.Service(Slow(), workers={workers})
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("server", "workers"), [("uvicorn", 0), ("uvicorn", 1), ("wsgiref", 1), ("gunicorn", 1)]
)
def test_port_answers_health_while_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str, workers: int
) -> None:
    if server == "gunicorn":
        require_tool(str(Path(sys.executable).parent / "gunicorn"))
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    (tmp_path / "slow.py").write_text(SLOW_LOAD.format(workers=workers))
    monkeypatch.setenv("RELEASE_FIFO", str(fifo))
    port = free_port()
    argv = [sys.executable, "-m", "modeldeploy", "serve", "slow:service", "--port", str(port)]
    process = Process([*argv, "--server", server], port=port, name=server, cwd=tmp_path)
    released = False
    try:

        def live() -> bool:
            try:
                return request(port, "GET", "/v2/health/live")[0] == 200
            except OSError:
                return False

        wait_for(live, "/v2/health/live answering 200", process)
        assert request(port, "GET", "/v2/health/ready")[0] == 400  # the protocol's false
        assert request(port, "GET", "/v2/models/slow/ready")[0] == 400
        early: list[tuple[int, object]] = []
        if server == "wsgiref":  # one thread, which the probes need: refused
            assert predict(port, 1)[0] == 503
        else:  # waits for the load, so a worker still loading fails nothing it accepts
            waiting = threading.Thread(target=lambda: early.append(predict(port, 1)))
            waiting.start()
        # a load past a second is logged as it goes; "serving" only once loaded
        wait_for(lambda: "loading model 'slow'" in process.log(), "a progress line", process)
        if server != "gunicorn":  # gunicorn's master logs it once bound; its workers load
            assert "serving model 'slow'" not in process.log()
        assert early == []  # still waiting, a second later

        # the test, not a timer, ends the load
        threading.Thread(target=fifo.write_text, args=("go",), daemon=True).start()
        released = True
        wait_for(lambda: request(port, "GET", "/v2/health/ready")[0] == 200, "ready", process)
        assert predict(port, 21) == (200, 21)
        if server != "wsgiref":
            waiting.join(timeout=WITHIN)
            assert early == [(200, 1)]
        wait_for(lambda: "serving model 'slow'" in process.log(), "the serving line", process)
        assert process.terminate() == 0, process.log()
    finally:
        if not released:  # unblock a load still waiting, so its process can die
            fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
            os.close(fd)
        process.kill()


# -- trap 4: a fitted scikit-learn pipeline, trained on a DataFrame --------------------


PIPELINE = """
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
rng = np.random.default_rng(0)
frame = pd.DataFrame(rng.normal(size=(60, 4)), columns=COLUMNS)
labels = (frame["sepal_length"] > 0).astype(int)
# columns chosen by name: a NumPy array instead of a DataFrame would not do
model = make_pipeline(
    make_column_transformer((StandardScaler(), COLUMNS)), LogisticRegression()
).fit(frame, labels)
"""


@pytest.mark.integration
def test_cli_serves_a_dataframe_pipeline(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    tclient = pytest.importorskip("tritonclient.http")
    np = pytest.importorskip("numpy")
    (tmp_path / "iris_pipeline.py").write_text(PIPELINE)
    process = serve("iris_pipeline:model", cwd=tmp_path, name="pipeline")
    try:
        record = dict(zip(["sepal_length", "sepal_width", "petal_length", "petal_width"],
                          [1.5, 0.1, 0.2, 0.3], strict=True))  # fmt: skip
        assert predict(process.port, record) == (200, 1)
        negative = {**record, "sepal_length": -1.5}
        assert predict(process.port, [record, negative]) == (200, [1, 0])  # records
        client = tclient.InferenceServerClient(f"127.0.0.1:{process.port}")
        try:
            features = tclient.InferInput("features", [1, 4], "FP32")  # the usual request
            features.set_data_from_numpy(np.array([[1.5, 0.1, 0.2, 0.3]], np.float32))
            result = client.infer("Pipeline", [features])
            (output,) = result.get_response()["outputs"]
            assert result.as_numpy(output["name"]).tolist() == [1]
            assert output["shape"] == [1]
        finally:
            client.close()
    finally:
        process.kill()


# -- trap 5: an async def model -----------------------------------------------------------


ASYNC_MODEL = """
import asyncio

import modeldeploy as md


async def double(x):
    await asyncio.sleep(0)
    return 2 * x


service = md.Service(double, workers=0)   # computed inline, on uvicorn's event loop
"""


@pytest.mark.integration
@pytest.mark.parametrize("attr", ["service", "double"])
def test_cli_serves_an_async_model(tmp_path: Path, attr: str) -> None:
    (tmp_path / "async_model.py").write_text(ASYNC_MODEL)
    process = serve(f"async_model:{attr}", cwd=tmp_path, name="async model")
    try:
        assert predict(process.port, 21) == (200, 42)
    finally:
        process.kill()


# -- trap 7: the smaller ones ---------------------------------------------------------------


def test_predict_with_several_models_names_them() -> None:
    import modeldeploy as md

    app = HTTPApp([md.Service(abs, name="iris", workers=0), md.Service(abs, name="wine")])
    response = app("POST", "/predict", {"content-type": "application/json"}, b"1")
    assert response.status == 404
    error = json.loads(response.body)["error"]
    assert error["code"] == "model_not_found"
    assert "'iris', 'wine'" in error["message"]
    assert "/models/{name}/predict" in error["message"]


@pytest.mark.integration
def test_a_taken_grpc_port_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        grpc_port = taken.getsockname()[1]
        result = run_cli(
            "serve", "operator:neg", "--port", str(free_port()), "--grpc-port", str(grpc_port),
            cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"cannot listen for gRPC on 127.0.0.1:{grpc_port}: the port is taken" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Failed to bind" not in result.stderr  # not gRPC's own text


@pytest.mark.parametrize("how", ["closed", "failed"])
def test_every_adapter_start_reports_a_service_that_cannot_answer(how: str) -> None:
    """HTTPApp.start_services, which the ASGI lifespan and the WSGI first request call."""
    import modeldeploy as md

    class Broken:
        name, version, signature = "m", "1", None

        def load(self) -> None:
            raise OSError("weights missing")

        def predict(self, batch: list[object]) -> list[object]:
            return batch

    service = md.Service(abs if how == "closed" else Broken(), name="m", workers=0)
    if how == "closed":
        with service:
            pass
    else:
        with pytest.raises(md.ModelLoadError):
            service.start()
    failure = HTTPApp(service).start_services()
    assert failure is not None
    assert ("is closed and cannot be served" if how == "closed" else "failed to start") in failure
