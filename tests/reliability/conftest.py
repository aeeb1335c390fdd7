"""Servers for the reliability suite: ``modeldeploy serve`` and gunicorn with the Flask app."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.integration.servers import Process, free_port

HEADER_TIMEOUT = 1.0  # seconds, short so that the suite stays short
BODY_TIMEOUT = 1.0
THREADS = 4

SERVE = [sys.executable, "-m", "modeldeploy", "serve", "modeldeploy.demo:service"]
TIMEOUTS = ["--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)]

# name -> argv without the port; {port} is filled in
SERVERS = {
    "uvicorn": [*SERVE, "--server", "uvicorn", *TIMEOUTS, "--port", "{port}"],
    "gunicorn": [
        *SERVE, "--server", "gunicorn", "--threads", str(THREADS), *TIMEOUTS, "--port", "{port}",
    ],
    # the Flask adapter on gunicorn, run as its users run it
    "flask-gunicorn": [
        sys.executable, "-m", "gunicorn", "-k", "modeldeploy.servers.gunicorn.ThreadWorker",
        "--threads", str(THREADS), "--bind", "127.0.0.1:{port}", "--log-level", "warning",
        "tests.reliability.apps:flask_app",
    ],
}  # fmt: skip


def start(name: str, *extra: str, env: dict[str, str] | None = None) -> Process:
    """Start server *name* on a free port; return it once ready."""
    port = free_port()
    argv = [arg.format(port=port) for arg in SERVERS[name]]
    process = Process([*argv, *extra], port=port, name=name)
    try:
        process.wait_ready()
    except BaseException:
        process.kill()
        raise
    return process


@pytest.fixture
def read_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment gunicorn run by hand reads its timeouts from."""
    monkeypatch.setenv("MODELDEPLOY_HEADER_TIMEOUT", str(HEADER_TIMEOUT))
    monkeypatch.setenv("MODELDEPLOY_BODY_TIMEOUT", str(BODY_TIMEOUT))


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest, read_timeouts: None) -> Iterator[Process]:
    process = start(request.param)
    yield process
    process.kill()
