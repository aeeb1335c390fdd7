"""Real servers for the end-to-end suite (started by the test, stopped by PID), and fakes."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import tritonclient.http as thttp

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
READY_WITHIN = 20.0  # seconds a server may take to answer /v2/health/ready


@attrs.frozen
class Server:
    """A server process on 127.0.0.1."""

    name: str
    host: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ready(port: int) -> bool:
    """Whether a server on *port* answers ``GET /v2/health/ready`` with 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/v2/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@attrs.frozen
class _Kind:
    tool: str
    argv: tuple[str, ...]


KINDS = {
    "uvicorn": _Kind(
        "uvicorn",
        ("-m", "uvicorn", "tests.adapters.app:asgi_app", "--host", "127.0.0.1", "--port", "{port}",
         "--lifespan", "on", "--log-level", "warning"),
    ),
    "gunicorn-sync": _Kind(
        "gunicorn",
        ("-m", "gunicorn", "tests.adapters.app:wsgi_app", "--bind", "127.0.0.1:{port}",
         "--workers", "1", "--worker-class", "sync", "--log-level", "warning"),
    ),
    "gunicorn-gthread": _Kind(
        "gunicorn",
        ("-m", "gunicorn", "tests.adapters.app:wsgi_app", "--bind", "127.0.0.1:{port}",
         "--workers", "1", "--worker-class", "gthread", "--threads", "4",
         "--log-level", "warning"),
    ),
}  # fmt: skip


@contextlib.contextmanager
def spawn(
    what: str, argv: list[str], port: int, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen[bytes]]:
    """
    Run *argv* from the repository root; yield the process once *ready()* says so.

    Waits at most READY_WITHIN seconds; a process that exits or stays unready
    fails the test with its output. The process is stopped by PID on exit.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + READY_WITHIN
            while not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    pytest.fail(f"{what} did not become ready on port {port}:\n{output}")
                time.sleep(0.05)  # polling interval of a bounded readiness loop
            yield process
        finally:
            _stop(process)


def start_server(kind: str) -> Iterator[Server]:
    """Start a server of *kind* serving tests/adapters/app.py; yield it once ready."""
    spec = KINDS[kind]
    require_tool(str(BIN / spec.tool))
    port = free_port()
    argv = [sys.executable, *(a.format(port=port) for a in spec.argv)]
    with spawn(kind, argv, port, lambda: http_ready(port)) as process:
        yield Server(kind, "127.0.0.1", port, process.pid)


@pytest.fixture(scope="class")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The server of the test class's ``server_kind``."""
    yield from start_server(request.cls.server_kind)


@pytest.fixture(scope="class")
def client(server: Server) -> Iterator[thttp.InferenceServerClient]:
    """The official V2 HTTP client, connected to ``server``."""
    client = thttp.InferenceServerClient(server.address, network_timeout=30)
    yield client
    client.close()


class BrokenPredictor:
    """A predictor whose ``load`` raises: its service fails to start."""

    signature = None
    name = "broken"
    version = "1"

    def load(self) -> None:
        raise OSError("weights missing")

    def predict(self, batch: Any) -> Any:
        return batch


class SlowStartPredictor:
    """A predictor whose ``load`` waits for ``open()``: its service is caught mid-start."""

    signature = None
    name = "slow_start"
    version = "1"

    def __init__(self) -> None:
        self.loading = threading.Event()
        self._gate = threading.Event()

    def open(self) -> None:
        self._gate.set()

    def load(self) -> None:
        self.loading.set()
        if not self._gate.wait(30):
            raise TimeoutError("the test never opened the gate")

    def predict(self, batch: Any) -> Any:
        return list(batch)
