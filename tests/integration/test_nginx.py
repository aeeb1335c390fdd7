"""
Debian's nginx, configured by ``modeldeploy nginx-config``, in front of two ``modeldeploy serve``.

Requests spread over both backends; one backend killed under load fails no client
request (nginx retries it on the other) and is taken out; started again, it rejoins.
"""

from __future__ import annotations

import collections
import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import grpc
import numpy as np
import pytest

from modeldeploy._proto.inference import grpc_service_pb2 as pb
from modeldeploy._proto.inference import grpc_service_pb2_grpc as pb_grpc
from modeldeploy.demo import predict_proba
from tests.conftest import require_tool
from tests.integration.servers import (
    ROOT,
    STOP_WITHIN,
    Process,
    accepts_connections,
    free_port,
    request,
    serve,
)

pytestmark = pytest.mark.integration

ROW = [[5.1, 3.5, 1.4, 0.2]]
BODY = json.dumps(ROW).encode()
JSON = {"Content-Type": "application/json"}
FAIL_TIMEOUT = 1.0  # seconds a failed backend stays out, short for the test
WITHIN = 20.0  # seconds any awaited condition may take
LOAD_THREADS = 4
MAX_REQUESTS = 20_000  # per load thread: the load stops by itself


def nginx_config(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy", "nginx-config", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@attrs.frozen
class Nginx:
    process: Process
    prefix: Path

    @property
    def port(self) -> int:
        return self.process.port

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)


def start_nginx(*args: str, port: int, ready: bool = True) -> Nginx:
    """nginx with ``modeldeploy nginx-config ARGS`` in a temporary prefix, in the foreground."""
    binary = require_tool("nginx")
    prefix = Path(tempfile.mkdtemp(prefix="modeldeploy-nginx-"))
    # started as root (CI), nginx runs its workers as nobody: they must reach the prefix
    prefix.chmod(0o755)
    (prefix / "nginx.conf").write_text(nginx_config(*args))
    process = Process(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        port=port,
        name="nginx",
    )
    try:
        if ready:
            process.wait_ready()  # /v2/health/ready, through nginx, from a backend
        else:
            deadline = time.monotonic() + WITHIN
            while not accepts_connections(port):
                assert process.process.poll() is None, process.log()
                assert time.monotonic() < deadline, process.log()
                time.sleep(0.05)  # polling interval of a bounded loop
    except BaseException:
        process.kill()
        raise
    return Nginx(process, prefix)


def metric_count(port: int) -> float:
    """``modeldeploy_requests_total`` of one backend, asked directly."""
    from prometheus_client.parser import text_string_to_metric_families

    _, _, body = request(port, "GET", "/metrics")
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "modeldeploy_requests":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def check_prediction(body: bytes) -> None:
    np.testing.assert_allclose(json.loads(body), predict_proba(ROW), rtol=1e-6)


@pytest.fixture(scope="module")
def backends() -> Iterator[list[Process]]:
    """Two `modeldeploy serve` processes, HTTP and gRPC each; a test may replace one."""
    processes: list[Process] = []
    try:
        for name in ("backend-a", "backend-b"):
            processes.append(
                serve("modeldeploy.demo:service", "--grpc-port", str(free_port()), name=name)
            )
        yield processes
    finally:
        for process in processes:
            process.kill()


def grpc_port_of(backend: Process) -> int:
    argv = backend.process.args
    assert isinstance(argv, list)
    return int(argv[argv.index("--grpc-port") + 1])


@pytest.fixture(scope="module")
def nginx(backends: list[Process]) -> Iterator[Nginx]:
    port = free_port()
    args = [f"--backend=127.0.0.1:{b.port}" for b in backends]
    args += [f"--grpc-backend=127.0.0.1:{grpc_port_of(b)}" for b in backends]
    args += [
        f"--listen=127.0.0.1:{port}",
        f"--grpc-listen=127.0.0.1:{free_port()}",
        f"--fail-timeout={FAIL_TIMEOUT}",
        "--upstream-header",
        "--workers=1",
    ]
    server = start_nginx(*args, port=port)
    yield server
    server.stop()


def test_the_configuration_passes_nginx_t() -> None:
    binary = require_tool("nginx")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "nginx.conf"
        config.write_text(
            nginx_config(
                "--backend=127.0.0.1:1", "--backend=[::1]:2", "--grpc-backend=localhost:3"
            )
        )
        result = subprocess.run(
            [binary, "-t", "-p", tmp, "-c", str(config), "-e", "stderr"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 0, result.stderr


def test_requests_spread_over_both_backends(backends: list[Process], nginx: Nginx) -> None:
    before = [metric_count(b.port) for b in backends]
    answered: collections.Counter[str] = collections.Counter()
    for _ in range(20):
        status, headers, body = request(nginx.port, "POST", "/predict", BODY, JSON)
        assert status == 200, body
        check_prediction(body)
        answered[headers["x-upstream"]] += 1
    assert set(answered) == {f"127.0.0.1:{b.port}" for b in backends}
    # each backend counted what nginx says it sent there
    after = [metric_count(b.port) for b in backends]
    assert [a - b for a, b in zip(after, before, strict=True)] == [
        answered[f"127.0.0.1:{b.port}"] for b in backends
    ]


def test_nginx_refuses_a_body_over_the_limit_as_modeldeploy_does(nginx: Nginx) -> None:
    # a second nginx with a small limit, in front of the same backends
    limit = 1000
    port = free_port()
    backend = nginx_upstream(nginx)
    small = start_nginx(
        f"--backend={backend}", f"--listen={port}", f"--max-body-size={limit}", port=port
    )
    try:
        status, headers, body = request(port, "POST", "/predict", b"[" + b" " * limit + b"]", JSON)
        assert status == 413
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "payload_too_large"
        status, _, body = request(port, "POST", "/v2/models/demo/infer", b" " * (limit + 1), JSON)
        assert status == 413
        assert "over the limit" in json.loads(body)["error"]
    finally:
        small.stop()


def nginx_upstream(nginx: Nginx) -> str:
    _, headers, _ = request(nginx.port, "GET", "/v2/health/ready")
    return headers["x-upstream"]


def test_grpc_calls_spread_over_both_backends(backends: list[Process], nginx: Nginx) -> None:
    config = (nginx.prefix / "nginx.conf").read_text()
    listen = next(
        line.split()[1] for line in config.splitlines() if line.strip().endswith("http2;")
    )
    request_message = pb.ModelInferRequest(
        model_name="demo",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="features",
                datatype="FP32",
                shape=[1, 4],
                contents=pb.InferTensorContents(fp32_contents=ROW[0]),
            )
        ],
    )
    answered = set()
    with grpc.insecure_channel(listen) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(4):
            response, call = stub.ModelInfer.with_call(request_message, timeout=10)
            (output,) = response.outputs
            if response.raw_output_contents:
                got = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
            else:
                got = np.array(output.contents.fp32_contents, dtype=np.float32)
            np.testing.assert_allclose(got.reshape(1, 3), predict_proba(ROW), rtol=1e-5)
            answered.add(dict(call.initial_metadata())["x-upstream"])
    assert answered == {f"127.0.0.1:{grpc_port_of(b)}" for b in backends}


@attrs.define
class Load:
    """Client threads posting through nginx until stopped; every failure is kept."""

    port: int
    stop: threading.Event = attrs.field(factory=threading.Event)
    answers: list[str] = attrs.field(factory=list)  # X-Upstream of each success, in order
    failures: list[str] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for _ in range(MAX_REQUESTS):
                if self.stop.is_set():
                    return
                try:
                    connection.request("POST", "/predict", body=BODY, headers=JSON)
                    response = connection.getresponse()
                    body = response.read()
                    upstream = response.getheader("x-upstream", "")
                    if response.status == 200:
                        check_prediction(body)
                        with self.lock:
                            self.answers.append(upstream)
                        continue
                    failure = f"{response.status} from {upstream}: {body[:200]!r}"
                except (OSError, http.client.HTTPException, AssertionError) as exc:
                    failure = repr(exc)
                    connection.close()
                with self.lock:
                    self.failures.append(failure)
        finally:
            connection.close()

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def wait_for(self, condition: str, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WITHIN
        while not predicate():
            assert time.monotonic() < deadline, f"no {condition} within {WITHIN}s"
            time.sleep(0.02)  # polling interval of a bounded loop


def test_a_killed_backend_fails_no_request_is_taken_out_and_rejoins(
    backends: list[Process], nginx: Nginx
) -> None:
    victim, survivor = backends
    victim_address = f"127.0.0.1:{victim.port}"
    survivor_address = f"127.0.0.1:{survivor.port}"
    load = Load(nginx.port)
    threads = [threading.Thread(target=load.run) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        load.wait_for("load", lambda: load.count() >= 200)
        victim.signal_group(signal.SIGKILL)  # a crash: no graceful stop
        victim.process.wait(timeout=STOP_WITHIN)
        killed_at = load.count()
        load.wait_for("requests after the kill", lambda: load.count() >= killed_at + 300)
        after_kill = load.answers[killed_at + 50 : killed_at + 300]
        revived = serve(
            "modeldeploy.demo:service",
            "--grpc-port",
            str(grpc_port_of(victim)),
            port=victim.port,
            name="backend-a again",
        )
        backends[0] = revived
        victim.kill()
        revived_at = load.count()
        load.wait_for(
            "answer from the revived backend",
            lambda: victim_address in load.answers[revived_at:],
        )
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=STOP_WITHIN)
    assert load.failures == []
    # requests in flight on the killed backend were retried on the other one ...
    assert any(a == f"{victim_address}, {survivor_address}" for a in load.answers)
    # ... which answered everything once the victim was out
    assert set(after_kill) == {survivor_address}
    assert "upstream server temporarily disabled" in nginx.error_log()
    # and the revived backend takes its share again
    load_after = load.answers[revived_at:]
    assert load_after.count(victim_address) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--backend"),
        (["--backend=127.0.0.1"], "is not HOST:PORT"),
        (["--backend=127.0.0.1:8001;"], "is not HOST:PORT"),
        (["--backend=h:1", "--fail-timeout=0"], "positive number of seconds"),
        (["--backend=h:1", "--max-body-size=big"], "positive number of bytes"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy", "nginx-config", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_retry_rules_follow_the_options() -> None:
    default = nginx_config("--backend=h:1", "--backend=h:2")
    assert "proxy_next_upstream error timeout non_idempotent;" in default
    assert "proxy_next_upstream_tries 2;" in default
    assert "grpc_pass" not in default
    strict = nginx_config("--backend=h:1", "--no-retry-post", "--snippet")
    assert "proxy_next_upstream error timeout;" in strict
    assert "events {" not in strict  # a snippet for the http context
