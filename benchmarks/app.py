"""
The server in process: uvicorn's HTTP protocol fed one request at a time (issue #10).

What a request costs a server's process, without the network: the bytes of a
request handed to uvicorn's httptools protocol (``data_received``), which
parses them and runs the app, until the answer is written to a transport that
keeps nothing; the event loop (uvloop) turns as often as the answer needs. The
limit is the hand-written raw ASGI app of ``benchmarks/apps/raw_asgi.py``
(orjson, NumPy, the model) on uvicorn's own protocol; it runs on
modeldeploy's protocol too (``modeldeploy.servers.uvicorn``: read deadlines,
one write an answer). modeldeploy's contestant is the app ``modeldeploy
serve`` builds for each worker process (``modeldeploy.cli.serve._asgi_app``
over ``benchmarks/apps/modeldeploy_app.py:service``, the tiny MLP, computed
on the event loop) on modeldeploy's protocol, which answers a model route
from the parser's callbacks (the direct lane, ``docs/cli.md``):

* for one process, with metrics kept in the process;
* for ``--workers N``, with metrics shared between processes;

each through ``/predict`` (JSON), V2 JSON and V2 binary. Every contestant runs in a
process of its own (the metrics' mode is chosen when they are imported), the
runs interleaved; each figure is the CPU time of the thread (``thread_time``),
best of the rounds, so a busy machine disturbs it less than wall-clock time.

``python benchmarks/app.py`` (``make bench BENCH=app``); ``BENCH_QUICK=1``
for a smoke run. The system calls a real server makes are not here, and its
caches are colder: ``benchmarks/http.py`` measures that.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import QUICK, machine, table, write_section

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
CALLS = 100  # requests per timed loop
ROUNDS = 3 if QUICK else 15  # timed loops per contestant and round
REPEATS = 1 if QUICK else 3  # interleaved processes per contestant

# (key, label, payload, environment)
CONTESTANTS = [
    ("raw", "raw ASGI app, uvicorn's protocol (the limit)", "JSON", {}),
    ("raw-ours", "raw ASGI app, modeldeploy's protocol", "JSON", {}),
    ("cli", "`modeldeploy serve`, one process, `/predict` JSON", "JSON", {}),
    ("cli-mp", "`modeldeploy serve --workers N`, `/predict` JSON", "JSON", {"MP": "1"}),
    ("cli-v2", "`modeldeploy serve --workers N`, V2 JSON", "V2 JSON", {"MP": "1"}),
    ("cli-v2b", "`modeldeploy serve --workers N`, V2 binary", "V2 binary", {"MP": "1"}),
]


def _payload(name: str) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
    """(path, headers, body) of the tiny model's request in the format *name*."""
    import numpy as np
    import orjson
    from models import from_env

    x = from_env().instance()
    if name == "JSON":
        body = orjson.dumps(x, option=orjson.OPT_SERIALIZE_NUMPY)
        return "/predict", [(b"content-type", b"application/json")], body
    if name == "V2 JSON":
        request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [x.size], "data": x}]}
        body = orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY)
        return "/v2/models/mlp/infer", [(b"content-type", b"application/json")], body
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [x.size],
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(len(header)).encode()),
    ]
    return "/v2/models/mlp/infer", headers, header + np.ascontiguousarray(x).tobytes()


class _Transport(asyncio.Transport):
    """A connection's transport that keeps the answer being written."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.sent += data

    def writelines(self, data) -> None:  # type: ignore[no-untyped-def,override]
        for item in data:
            self.sent += item

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def answered(self) -> bool:
        """Whether a whole answer (its head and its content-length's bytes) is in."""
        end = self.sent.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.sent[:end]).lower()
        length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        return len(self.sent) >= end + 4 + length


def one(key: str) -> float:
    """Seconds of thread time per request of *key*, in this process (the best loop)."""
    import uvicorn
    import uvloop
    from uvicorn.lifespan.on import LifespanOn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from modeldeploy.servers import uvicorn as ours

    _, _, payload, env = next(c for c in CONTESTANTS if c[0] == key)
    sys.path.insert(0, str(APPS))
    os.environ.setdefault("BENCH_MODEL", "tiny")
    if key.startswith("raw"):
        from raw_asgi import app
    else:
        if env.get("MP"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-app-")
        from modeldeploy.cli import serve

        os.environ[serve._SPEC_ENV] = "modeldeploy_app:service"
        app = serve._asgi_app()
    protocol_class = HttpToolsProtocol if key == "raw" else ours.HttpToolsProtocol
    path, headers, body = _payload(payload)
    request = b"".join(
        [
            b"POST " + path.encode() + b" HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n",
            *(name + b": " + value + b"\r\n" for name, value in headers),
            b"content-length: %d\r\n\r\n" % len(body),
            body,
        ]
    )

    async def loop() -> float:
        config = uvicorn.Config(
            app, http=protocol_class, lifespan="on", access_log=False, log_level="warning",
            interface="asgi3",
        )  # fmt: skip
        config.load()
        lifespan = LifespanOn(config)
        await lifespan.startup()  # starts the model's load
        transport = _Transport()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(transport)

        async def answer() -> None:
            transport.sent.clear()
            protocol.data_received(request)
            while not transport.answered():  # an ASGI answer takes a round or two
                await asyncio.sleep(0)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the model is loaded and answers
            await answer()
            if transport.sent.startswith(b"HTTP/1.1 200"):
                break
            await asyncio.sleep(0.05)
        for _ in range(200):  # warm up
            await answer()
        if not transport.sent.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{key}: {bytes(transport.sent[:300])!r}")
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.thread_time()
            for _ in range(CALLS):
                await answer()
            best = min(best, (time.thread_time() - start) / CALLS)
        return best

    return uvloop.run(loop())


def main() -> None:
    results: dict[str, list[float]] = {c[0]: [] for c in CONTESTANTS}
    for _ in range(REPEATS):
        for key, *_ in CONTESTANTS:
            done = subprocess.run(
                [sys.executable, __file__, "--one", key],
                capture_output=True, text=True, timeout=300, cwd=HERE,
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"{key} failed:\n{done.stderr}")
            results[key].append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = {key: min(values) for key, values in results.items()}
    rows = [
        [label, f"{best[key] * 1e6:.1f}", f"**{best[key] / best['raw']:.2f}x**"]
        for key, label, *_ in CONTESTANTS
    ]
    text = table(["app (tiny MLP, in process)", "us/request (thread time)", "vs raw app"], rows)
    print(text)
    if not QUICK:
        write_section(
            "app",
            "## The served app in process\n\n"
            + __doc__.split("\n\n", 1)[1].strip()
            + f"\n\n{machine()}\n\n{text}\n",
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2])))
    else:
        main()
