"""The ``modeldeploy`` command: help, SPEC resolution, and real servers on loopback."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tgrpc

import modeldeploy as md
from modeldeploy import cli
from modeldeploy.demo import predict_proba
from modeldeploy.http import HTTPApp
from tests.conftest import require_tool
from tests.integration.servers import (
    ROOT,
    STOP_WITHIN,
    Process,
    free_port,
    is_ready,
    request,
    serve,
)

SERVE_OPTIONS = [
    "--host",
    "--port",
    "--workers",
    "--server",
    "--threads",
    "--grpc-port",
    "--header-timeout",
    "--body-timeout",
    "--send-timeout",
    "--keep-alive-timeout",
    "--max-connections",
    "--log-level",
    "--access-log",
    "--canary-alias",
    "--canary-weight",
    "--canary-key",
    "--admin",
]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- help -------------------------------------------------------------------------------


class TestHelp:
    def test_top_level_lists_every_command(self) -> None:
        result = run_cli("--help")
        assert result.returncode == 0
        assert "serve" in result.stdout
        assert "--version" in result.stdout

    def test_serve_lists_every_option(self) -> None:
        result = run_cli("serve", "--help")
        assert result.returncode == 0
        for option in SERVE_OPTIONS:
            assert option in result.stdout, option
        for server in cli.SERVERS:
            assert server in result.stdout
        assert "SPEC" in result.stdout and "package.module:attribute" in result.stdout

    def test_the_documented_options_are_the_parser_options(self) -> None:
        parser = cli.build_parser()
        subparsers = next(
            a for a in parser._actions if a.dest == "command"
        )  # argparse has no public accessor for subcommands
        serve = subparsers.choices["serve"]  # type: ignore[index]
        options = {s for a in serve._actions for s in a.option_strings if s.startswith("--")}
        assert options == {*SERVE_OPTIONS, "--help"}
        documented = (ROOT / "docs" / "cli.md").read_text()
        for option in SERVE_OPTIONS:
            assert f"`{option}" in documented, option

    def test_version(self) -> None:
        result = run_cli("--version")
        assert (result.returncode, result.stdout.strip()) == (0, f"modeldeploy {md.__version__}")

    def test_no_command_is_a_usage_error(self) -> None:
        result = run_cli()
        assert result.returncode == 2
        assert "COMMAND" in result.stderr


# -- SPEC resolution -----------------------------------------------------------------


TARGETS = """
import modeldeploy as md
from modeldeploy.http import HTTPApp


def double(x):
    return 2 * x


class Doubler:
    name = "doubler"
    version = "7"
    signature = None

    def load(self):
        pass

    def predict(self, batch):
        return [2 * x for x in batch]


service = md.Service(double, name="svc", workers=0)
app = HTTPApp([md.Service(double, name="a", workers=0), md.Service(double, name="b", workers=0)])
predictor = Doubler()


class models:
    double = double


answer = 42
"""


@pytest.fixture
def targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of every kind of target, importable as ``cli_targets``."""
    (tmp_path / "cli_targets.py").write_text(TARGETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cli_targets", raising=False)
    yield "cli_targets"
    sys.modules.pop("cli_targets", None)


class TestResolve:
    def test_service_is_served_alone(self, targets: str) -> None:
        app = cli.resolve(f"{targets}:service")
        assert list(app.services) == ["svc"]
        assert app.services["svc"] is sys.modules[targets].service

    def test_http_app_is_served_as_it_is(self, targets: str) -> None:
        assert cli.resolve(f"{targets}:app") is sys.modules[targets].app

    def test_predictor_gets_a_service_with_prometheus(self, targets: str) -> None:
        app = cli.resolve(f"{targets}:predictor")
        (service,) = app.services.values()
        assert (service.name, service.version) == ("doubler", "7")
        assert any(isinstance(m, md.PrometheusMonitor) for m in service._monitors)
        with service:
            assert service.predict(4) == 8

    @pytest.mark.parametrize("attr", ["double", "models.double"])
    def test_callable_is_wrapped(self, targets: str, attr: str) -> None:
        app = cli.resolve(f"{targets}:{attr}")
        (service,) = app.services.values()
        assert service.name == "double"
        with service:
            response = service.handle(md.Request(b"21", "application/json"))
        assert (response.status, response.body) == (200, b"42")

    def test_demo(self) -> None:
        app = cli.resolve("modeldeploy.demo:service")
        assert isinstance(app, HTTPApp) and list(app.services) == ["demo"]

    @pytest.mark.parametrize(
        ("spec", "error", "message"),
        [
            ("no_such_module_xyz:app", md.ModelNotFoundError, "no module named 'no_such_mod"),
            ("modeldeploy.demo:nope", md.ModelNotFoundError, "has no attribute 'nope'"),
            ("modeldeploy.demo:SEED", md.ModelLoadError, "is of type int"),
            ("modeldeploy.demo:Service", md.ModelLoadError, "is the class Service"),
            ("models/iris/3", md.ModelNotFoundError, "expected package.module:attribute"),
            ("modeldeploy.demo", md.ModelNotFoundError, "expected package.module:attribute"),
        ],
    )  # fmt: skip
    def test_errors(self, spec: str, error: type[Exception], message: str) -> None:
        with pytest.raises(error, match=re.escape(message)):
            cli.resolve(spec)


class TestUsageErrors:
    """Every SPEC or option problem: one line on stderr, exit status 2, no traceback."""

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["no_such_module_xyz:app"], "no module named 'no_such_module_xyz'"),
            (["modeldeploy.demo:nope"], "'modeldeploy.demo' has no attribute 'nope'"),
            (["modeldeploy.demo:SEED"], "is of type int; expected a Service, a Predictor"),
            (["not a spec"], "cannot read SPEC 'not a spec'"),
            (["broken:app"], "importing 'broken' failed: RuntimeError: boom"),
            (["needs_dep:app"], "ModuleNotFoundError: No module named 'dep_not_installed_xyz'"),
            (["modeldeploy.demo:service", "--threads", "2"], "--threads applies to"),
            (["modeldeploy.demo:service", "--server", "wsgiref", "--workers", "2"], "wsgiref"),
        ],
    )
    def test_message_and_status(self, tmp_path: Path, args: list[str], message: str) -> None:
        (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
        (tmp_path / "needs_dep.py").write_text("import dep_not_installed_xyz\n")
        # run where the modules are: SPEC imports from the current directory
        result = run_cli("serve", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("modeldeploy serve: error: ")
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    @pytest.mark.parametrize("args", [["--port", "0"], ["--port", "http"], ["--workers", "0"]])
    def test_bad_option_values(self, args: list[str]) -> None:
        result = run_cli("serve", "modeldeploy.demo:service", *args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "error: argument" in result.stderr


def python_blocks(page: str = "docs/cli.md") -> list[str]:
    text = (ROOT / page).read_text()
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def run_python(source: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_docs_demo_example() -> None:
    (example,) = [b for b in python_blocks() if "predict_proba" in b]
    run_python(example)


def test_readme_example() -> None:
    (example,) = python_blocks("README.md")
    printed = run_python(example)
    assert len(re.findall(r"-?\d+\.\d+", printed)) == 3  # the model's three scores


# -- real servers ----------------------------------------------------------------------


def check_predict(port: int) -> None:
    status, headers, body = request(
        port, "POST", "/predict", json.dumps(ROWS).encode(), {"Content-Type": "application/json"}
    )
    assert (status, headers["content-type"]) == (200, "application/json")
    np.testing.assert_allclose(json.loads(body), predict_proba(ROWS), rtol=1e-6)


def served(port: int) -> float:
    """The demo's successful requests, as ``/metrics`` counts them."""
    _, _, body = request(port, "GET", "/metrics")
    found = re.findall(
        rb'^modeldeploy_requests_total\{code="ok",model="demo",version="1"\} (\S+)$',
        body,
        re.MULTILINE,
    )
    return sum(float(v) for v in found)


def check_metrics_count_every_process(port: int) -> None:
    before = served(port)
    for _ in range(20):
        # a new connection each time, so every worker process gets some
        check_predict(port)
    assert served(port) == before + 20


def listening_line(server: str, port: int, processes: str) -> str:
    return (
        f"serving model 'demo' version '1' on http://127.0.0.1:{port} ({server}, {processes}); "
        "metrics on /metrics"
    )


def stop_cleanly(process: Process) -> None:
    status = process.terminate()
    assert status == 0, process.log()
    log = process.log()
    # ours, or uvicorn's supervisor's ("Received SIGTERM, exiting.") when it took the signal
    assert "received sigterm" in log.lower()
    assert "modeldeploy.cli: stopped" in log
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def workers_grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def uvicorn(grpc_port: int) -> Iterator[Process]:
    require_tool(str(Path(sys.executable).parent / "uvicorn"))
    process = serve("modeldeploy.demo:service", "--grpc-port", str(grpc_port), name="uvicorn")
    yield process
    process.kill()


@pytest.fixture(scope="module")
def gunicorn() -> Iterator[Process]:
    require_tool(str(Path(sys.executable).parent / "gunicorn"))
    process = serve(
        "modeldeploy.demo:service", "--server", "gunicorn", "--workers", "2",
        "--threads", "2", name="gunicorn",
    )  # fmt: skip
    yield process
    process.kill()


@pytest.fixture(scope="module")
def wsgiref() -> Iterator[Process]:
    process = serve("operator:neg", "--server", "wsgiref", name="wsgiref")
    yield process
    process.kill()


@pytest.mark.integration
class TestUvicorn:
    @pytest.fixture
    def server(self, uvicorn: Process) -> Process:
        return uvicorn

    def test_predict(self, server: Process) -> None:
        check_predict(server.port)

    def test_answers_do_not_name_the_server(self, server: Process) -> None:
        _, headers, _ = request(server.port, "GET", "/v2/health/live")
        assert "server" not in headers
        assert "date" in headers

    def test_logs_where_it_listens(self, server: Process, grpc_port: int) -> None:
        log = server.log()
        assert listening_line("uvicorn", server.port, "1 process") in log
        assert f"serving gRPC (V2 GRPCInferenceService) on 127.0.0.1:{grpc_port}" in log

    def test_grpc_beside_http(self, server: Process, grpc_port: int) -> None:
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            assert client.is_server_live()
            assert client.is_model_ready("demo")
            features = tgrpc.InferInput("features", [2, 4], "FP32")
            features.set_data_from_numpy(np.asarray(ROWS, dtype=np.float32))
            result = client.infer("demo", [features])
            np.testing.assert_allclose(
                result.as_numpy("probabilities"), predict_proba(ROWS), rtol=1e-6
            )
        finally:
            client.close()

    def test_docs_grpc_example(self, server: Process, grpc_port: int) -> None:
        (example,) = [b for b in python_blocks() if "tritonclient.grpc" in b]
        printed = run_python(example.replace("127.0.0.1:8001", f"127.0.0.1:{grpc_port}"))
        numbers = [float(x) for x in re.findall(r"\d\.\d+(?:e[-+]\d+)?", printed)]
        np.testing.assert_allclose(numbers, predict_proba(ROWS[:1])[0], rtol=1e-5)

    def test_sigterm_stops_cleanly(self, server: Process) -> None:
        stop_cleanly(server)
        assert "Application shutdown complete" in server.log()


@pytest.mark.integration
class TestGunicorn:
    """gthread workers in two processes, metrics in prometheus_client's multiprocess mode."""

    @pytest.fixture
    def server(self, gunicorn: Process) -> Process:
        return gunicorn

    def test_predict(self, server: Process) -> None:
        check_predict(server.port)

    def test_logs_where_it_listens(self, server: Process) -> None:
        log = server.log()
        assert listening_line("gunicorn", server.port, "2 processes, 2 threads each") in log
        assert "Using worker: modeldeploy.servers.gunicorn.ThreadWorker" in log
        assert "Booting worker with pid" in log

    def test_metrics_count_every_process(self, server: Process) -> None:
        check_metrics_count_every_process(server.port)

    def test_sigterm_stops_cleanly(self, server: Process) -> None:
        stop_cleanly(server)
        assert "Shutting down: Master" in server.log()


@pytest.mark.integration
class TestUvicornWorkers:
    """``--workers 2``: uvicorn spawns two processes that import SPEC themselves."""

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, workers_grpc_port: int) -> Iterator[Process]:
        process = serve(
            "modeldeploy.demo:service", "--workers", "2", "--grpc-port", str(workers_grpc_port),
            name="uvicorn x2",
        )  # fmt: skip
        yield process
        process.kill()

    def test_predict_and_metrics(self, server: Process) -> None:
        assert listening_line("uvicorn", server.port, "2 processes") in server.log()
        check_metrics_count_every_process(server.port)

    def test_metrics_count_grpc_requests_of_the_supervisor(
        self, server: Process, workers_grpc_port: int
    ) -> None:
        # the supervising process answers gRPC: its counts are in the shared directory
        before = served(server.port)
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{workers_grpc_port}")
        try:
            features = tgrpc.InferInput("features", [2, 4], "FP32")
            features.set_data_from_numpy(np.asarray(ROWS, dtype=np.float32))
            for _ in range(5):
                client.infer("demo", [features])
        finally:
            client.close()
        assert served(server.port) == before + 5

    def test_sigterm_stops_cleanly(self, server: Process) -> None:
        stop_cleanly(server)
        assert server.log().count("Application shutdown complete") == 2


@pytest.mark.integration
class TestWsgiref:
    """The stdlib server, serving a plain function (wrapped in a Service)."""

    @pytest.fixture
    def server(self, wsgiref: Process) -> Process:
        return wsgiref

    def test_predict(self, server: Process) -> None:
        status, _, body = request(
            server.port, "POST", "/predict", b"21", {"Content-Type": "application/json"}
        )
        assert (status, body) == (200, b"-21")

    def test_logs_where_it_listens(self, server: Process) -> None:
        assert (
            f"serving model 'neg' version '1' on http://127.0.0.1:{server.port} "
            "(wsgiref, 1 process); metrics on /metrics"
        ) in server.log()

    def test_sigterm_stops_cleanly(self, server: Process) -> None:
        stop_cleanly(server)


@pytest.mark.integration
def test_sigint_stops_cleanly_too() -> None:
    process = serve("operator:neg", name="uvicorn")
    try:
        process.process.send_signal(signal.SIGINT)
        assert process.process.wait(timeout=STOP_WITHIN) == 0, process.log()
        assert "received SIGINT, shutting down" in process.log()
        assert "Application shutdown complete" in process.log()
    finally:
        process.kill()


BAD_LOAD = """
import modeldeploy as md

class Model:
    name, version, signature = "bad", "1", None

    def load(self):
        raise OSError("weights missing")

    def predict(self, batch):
        return batch

service = md.Service(Model())
"""


@pytest.mark.integration
@pytest.mark.parametrize("server", ["uvicorn", "wsgiref"])
def test_model_that_fails_to_load_exits_1(tmp_path: Path, server: str) -> None:
    (tmp_path / "bad_load.py").write_text(BAD_LOAD)
    port = str(free_port())
    result = run_cli("serve", "bad_load:service", "--server", server, "--port", port, cwd=tmp_path)
    assert result.returncode == 1
    assert "model 'bad' failed to load" in result.stderr
    assert "weights missing" in result.stderr  # the cause, for the operator


@pytest.mark.integration
def test_port_in_use_fails_with_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", "operator:neg", "--server", "wsgiref", "--port", port)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def worker_pids(pid: int) -> set[int]:
    """The child processes of *pid* (Linux)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.update(int(p) for p in text)
    return children


def wait_until(condition: Callable[[], bool], what: str, process: Process) -> None:
    deadline = time.monotonic() + STOP_WITHIN
    while not condition():
        if process.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen:\n{process.log()}")
        time.sleep(0.05)  # polling interval of a bounded loop


@pytest.mark.integration
def test_dead_uvicorn_worker_is_marked_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that dies is replaced, its live gauges leave the shared directory, and
    what it served keeps counting: every request of both workers is in one scrape."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    process = serve("modeldeploy.demo:service", "--workers", "2", name="uvicorn x2")
    try:
        # spawned workers, plus multiprocessing's resource tracker: the ones with gauges
        wait_until(
            lambda: len({p for p in worker_pids(process.pid) if gauge_files(metrics, p)}) == 2,
            "both workers writing gauges",
            process,
        )
        workers = {p for p in worker_pids(process.pid) if gauge_files(metrics, p)}
        sent = 0

        def both_served() -> bool:
            # a new connection per request: the kernel spreads them over the workers
            nonlocal sent
            check_predict(process.port)
            sent += 1
            return all(ok_in_files(metrics, pid) > 0 for pid in workers)

        wait_until(both_served, "requests answered by both workers", process)
        assert served(process.port) == sent  # whichever worker answers the scrape
        victim = min(workers)
        assert ok_in_files(metrics, victim) > 0
        assert (metrics / f"gauge_livesum_{victim}-requests.db").exists()
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: not gauge_files(metrics, victim), "the dead worker's gauges gone", process
        )
        assert (metrics / f"counter_{victim}-requests.db").exists()
        wait_until(lambda: is_ready(process.port), "the server ready again", process)
        assert served(process.port) == sent  # the dead worker's requests still count
        assert any(p not in workers for p in worker_pids(process.pid))  # replaced
        assert stop_status(process) == 0
    finally:
        process.kill()
    assert sorted(metrics.iterdir())  # a directory of the user's is kept


def gauge_files(directory: Path, pid: int) -> list[Path]:
    """prometheus_client's live gauges of *pid*, and the monitor's ``inflight_requests``."""
    return [
        *directory.glob(f"gauge_live*_{pid}.db"),
        *directory.glob(f"gauge_livesum_{pid}-requests.db"),
    ]


def ok_in_files(directory: Path, pid: int) -> float:
    """The demo's successful requests in the request files of process *pid*."""
    from prometheus_client.multiprocess import MultiProcessCollector

    path = directory / f"counter_{pid}-requests.db"
    if not path.exists():
        return 0.0
    return sum(
        s.value
        for family in MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        for s in family.samples
        if s.labels.get("code") == "ok" and s.labels.get("model") == "demo"
    )


def stop_status(process: Process) -> int:
    return process.terminate()


INLINE = """
import asyncio
import threading

import modeldeploy as md


def where(x):
    try:
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    except RuntimeError:
        loop = None
    return [threading.current_thread().name, loop]


service = md.Service(where, name="where", workers=0)
"""


@pytest.mark.integration
def test_workers_0_service_computes_on_the_uvloop_event_loop(tmp_path: Path) -> None:
    """`modeldeploy serve` of a workers=0 service takes the inline path on uvloop."""
    (tmp_path / "where.py").write_text(INLINE)
    process = serve("where:service", cwd=tmp_path, name="uvicorn inline")
    try:
        status, _, body = request(
            process.port, "POST", "/predict", b"1", {"Content-Type": "application/json"}
        )
        assert status == 200, body
        assert json.loads(body) == ["MainThread", "uvloop"]
    finally:
        process.kill()


def test_the_asgi_extra_brings_uvicorns_c_loop_and_parser() -> None:
    # the installed package's metadata, as pip reads it
    requires = importlib.metadata.requires("modeldeploy") or []
    asgi = {re.split(r"[<>=;\[ ]", r)[0] for r in requires if re.search(r"extra == .asgi.", r)}
    assert {"uvicorn", "uvloop", "httptools"} <= asgi


@pytest.mark.integration
def test_gunicorn_metrics_count_grpc_requests_of_the_supervisor() -> None:
    """gunicorn serves HTTP in its own processes; gRPC is answered by the supervisor."""
    require_tool(str(Path(sys.executable).parent / "gunicorn"))
    grpc_port = free_port()
    process = serve(
        "modeldeploy.demo:service", "--server", "gunicorn", "--grpc-port", str(grpc_port),
        name="gunicorn + grpc",
    )  # fmt: skip
    try:
        before = served(process.port)
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            # the supervisor loads its own copy of the model, on its own time
            wait_until(lambda: client.is_model_ready("demo"), "gRPC ready", process)
            features = tgrpc.InferInput("features", [1, 4], "FP32")
            features.set_data_from_numpy(np.asarray(ROWS[:1], dtype=np.float32))
            for _ in range(3):
                client.infer("demo", [features])
        finally:
            client.close()
        check_predict(process.port)
        assert served(process.port) == before + 4  # 3 over gRPC, 1 over HTTP
    finally:
        process.kill()
