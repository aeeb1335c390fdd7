"""The shipped demo model and ``make demo``, run for real with the curl commands it prints."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given

import modeldeploy as md
from modeldeploy import demo
from tests import strategies
from tests.conftest import require_tool
from tests.integration.servers import (
    ROOT,
    STOP_WITHIN,
    Process,
    accepts_connections,
    free_port,
)

# flowers near each class's mean, and their class
EXAMPLES = [
    ([5.1, 3.5, 1.4, 0.2], "setosa"),
    ([4.9, 3.0, 1.4, 0.2], "setosa"),
    ([5.9, 3.0, 4.2, 1.5], "versicolor"),
    ([5.7, 2.8, 4.1, 1.3], "versicolor"),
    ([6.7, 3.0, 5.2, 2.3], "virginica"),
    ([6.3, 3.3, 6.0, 2.5], "virginica"),
]


class TestModel:
    def test_classifies_flowers_near_each_class(self) -> None:
        rows = [features for features, _ in EXAMPLES]
        probabilities = demo.predict_proba(rows)
        assert [demo.CLASSES[i] for i in probabilities.argmax(axis=1)] == [
            name for _, name in EXAMPLES
        ]
        assert probabilities.max(axis=1).min() > 0.8

    @given(strategies.demo_flowers)
    def test_probabilities(self, rows: list[list[float]]) -> None:
        probabilities = demo.predict_proba(rows)
        assert probabilities.dtype == np.float32
        assert probabilities.shape == (len(rows), 3)
        assert np.all(probabilities >= 0)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    @given(strategies.demo_flowers)
    def test_rows_are_independent(self, rows: list[list[float]]) -> None:
        together = demo.predict_proba(rows)
        one_by_one = np.concatenate([demo.predict_proba([row]) for row in rows])
        np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-7)

    def test_weights_are_deterministic(self) -> None:
        shipped = (demo._CENTER, demo._SCALE, demo._W1, demo._B1, demo._W2, demo._B2)
        for built, weights in zip(demo._build(), shipped, strict=True):
            np.testing.assert_array_equal(built, weights)


class TestService:
    def test_identity(self) -> None:
        assert (demo.service.name, demo.service.version) == ("demo", "1")
        assert demo.service.signature == demo.SIGNATURE
        assert [s.media_type for s in demo.service.negotiator.serializers] == [
            "application/json",
            "application/msgpack",
        ]
        assert any(isinstance(m, md.PrometheusMonitor) for m in demo.service._monitors)

    def test_fresh_service_answers_json_and_msgpack(self) -> None:
        # a copy of the demo's configuration, so the module's service stays unstarted
        rows = [features for features, _ in EXAMPLES[:2]]
        with md.Service(
            md.predictor(demo.predict_proba, batched=True, signature=demo.SIGNATURE),
            workers=1,
            max_batch_size=4,
            batch_rows=True,
        ) as service:
            response = service.handle(md.Request(json.dumps(rows).encode(), "application/json"))
            assert response.status == 200
            np.testing.assert_allclose(json.loads(response.body), demo.predict_proba(rows))
            packed = md.MsgPack().dumps(rows)
            response = service.handle(
                md.Request(packed, "application/msgpack", accept="application/msgpack")
            )
            assert response.status == 200
            got = md.MsgPack().loads(response.body)
            np.testing.assert_allclose(np.stack(got), demo.predict_proba(rows))


class TestCurlCommands:
    def test_one_command_per_protocol(self) -> None:
        text = demo.curl_commands("127.0.0.1", 9000, ".venv/bin/python")
        commands = [line for line in text.splitlines() if not line.startswith("#")]
        assert len(commands) == 4
        assert all("curl -s http://127.0.0.1:9000/" in line for line in commands)
        assert "/predict" in commands[0] and "application/json" in commands[0]
        assert "application/msgpack" in commands[1] and "--data-binary @-" in commands[1]
        assert commands[1].startswith(".venv/bin/python -c ")
        assert "/v2/models/demo/infer" in commands[2]
        assert commands[3].endswith("/metrics")

    def test_main_prints_them(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert demo.main(["--port", "9123"]) == 0
        out = capsys.readouterr().out
        assert "curl -s http://127.0.0.1:9123/v2/models/demo/infer" in out


# -- make demo ------------------------------------------------------------------------


def assume_installed() -> list[str]:
    """Tell make the venv is installed: the test must not reinstall the package."""
    return [f"--assume-old={p.relative_to(ROOT)}" for p in ROOT.glob(".venv/.installed-*")]


def test_make_n_demo() -> None:
    make = shutil.which("make") or pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "--no-print-directory", "-n", "demo", "PORT=9123", *assume_installed()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[-2:] == [
        ".venv/bin/python -m modeldeploy.demo --port 9123",
        ".venv/bin/modeldeploy serve modeldeploy.demo:service --port 9123",
    ]


@pytest.fixture(scope="module")
def make_demo() -> Iterator[Process]:
    make = require_tool("make")
    require_tool("curl")
    if not (ROOT / ".venv" / "bin" / "modeldeploy").exists():
        pytest.skip("the .venv of this checkout is not installed")
    port = free_port()
    process = Process(
        [make, "--no-print-directory", "demo", f"PORT={port}", *assume_installed()],
        port=port,
        name="make demo",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


def printed_commands(stdout: str) -> dict[str, str]:
    """The pasteable commands, keyed by the comment line above each."""
    commands = {}
    lines = stdout.splitlines()
    for comment, line in itertools.pairwise(lines):
        if comment.startswith("# ") and "curl" in line:
            commands[comment] = line
    return commands


def run_pasted(command: str) -> str:
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, (command, result.stderr)
    return result.stdout


@pytest.mark.integration
class TestMakeDemo:
    def test_prints_a_command_per_protocol_and_serves_it(self, make_demo: Process) -> None:
        commands = list(printed_commands(make_demo.stdout()).values())
        assert len(commands) == 4, make_demo.stdout()
        json_curl, msgpack_curl, v2_curl, metrics_curl = commands

        answer = json.loads(run_pasted(json_curl))
        assert [demo.CLASSES[int(np.argmax(row))] for row in answer] == ["setosa", "virginica"]

        printed = run_pasted(msgpack_curl)  # "[array([...], dtype=float32)]"
        assert "dtype=float32" in printed
        numbers = [float(x) for x in re.findall(r"\d\.\d+(?:e-?\d+)?", printed)]
        assert len(numbers) == 3
        assert demo.CLASSES[int(np.argmax(numbers))] == "virginica"

        inferred = json.loads(run_pasted(v2_curl))
        (output,) = inferred["outputs"]
        assert (inferred["model_name"], output["name"], output["shape"]) == (
            "demo",
            "probabilities",
            [1, 3],
        )
        assert demo.CLASSES[int(np.argmax(output["data"]))] == "versicolor"

        metrics = run_pasted(metrics_curl)
        assert 'modeldeploy_requests_total{code="ok",model="demo",version="1"} 3.0' in metrics

    def test_logs_where_it_listens(self, make_demo: Process) -> None:
        assert (
            f"serving model 'demo' version '1' on http://127.0.0.1:{make_demo.port} "
            "(uvicorn, 1 process); metrics on /metrics"
        ) in make_demo.log()

    def test_sigterm_to_the_process_group_stops_it(self, make_demo: Process) -> None:
        make_demo.signal_group(signal.SIGTERM)
        make_demo.process.wait(timeout=STOP_WITHIN)
        # make may exit before the server it ran: wait for the port to close
        deadline = time.monotonic() + STOP_WITHIN
        while accepts_connections(make_demo.port):
            assert time.monotonic() < deadline, make_demo.log()
            time.sleep(0.05)  # polling interval of a bounded loop
        assert "modeldeploy.cli: stopped" in make_demo.log()
