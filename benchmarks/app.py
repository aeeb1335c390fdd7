"""
The served app in process: each ASGI app's callable, called in a loop (issue #10).

What a request costs the application a server runs, without the server: the
app's ``await app(scope, receive, send)`` with a ready-made scope, a receive
that hands over the body and a send that keeps the messages. The limit is the
hand-written raw ASGI app of ``benchmarks/apps/raw_asgi.py`` (orjson, NumPy,
the model). modeldeploy's contestant is the app ``modeldeploy serve`` builds
for each worker process (``modeldeploy.cli.serve._asgi_app`` over
``benchmarks/apps/modeldeploy_app.py:service``, the tiny MLP):

* for one process, with metrics kept in the process;
* for ``--workers N``, with metrics shared between processes;

each through ``/predict`` (JSON), V2 JSON and V2 binary. Every contestant runs in a
process of its own (the metrics' mode is chosen when they are imported), the
runs interleaved; each figure is the CPU time of the thread (``thread_time``),
best of the rounds, so a busy machine disturbs it less than wall-clock time.

``python benchmarks/app.py`` (``make bench BENCH=app``); ``BENCH_QUICK=1``
for a smoke run. Under a real server each of these costs about twice as much
(cold caches), so a microsecond here is about two there.
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
    ("raw", "raw ASGI app (the limit)", "JSON", {}),
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


def one(key: str) -> float:
    """Seconds of thread time per request of *key*, in this process (the best loop)."""
    _, _, payload, env = next(c for c in CONTESTANTS if c[0] == key)
    sys.path.insert(0, str(APPS))
    os.environ.setdefault("BENCH_MODEL", "tiny")
    if key == "raw":
        from raw_asgi import app
    else:
        if env.get("MP"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-app-")
        from modeldeploy.cli import serve

        os.environ[serve._SPEC_ENV] = "modeldeploy_app:service"
        app = serve._asgi_app()
    path, headers, body = _payload(payload)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    message = {"type": "http.request", "body": body, "more_body": False}
    sent: list[dict] = []
    lifespan: list[asyncio.Future] = []

    async def receive() -> dict:
        return message

    async def send(m: dict) -> None:
        sent.append(m)

    async def loop() -> float:
        if key != "raw":  # the lifespan starts the model's load; wait until it serves
            inbox: asyncio.Queue[dict] = asyncio.Queue()
            await inbox.put({"type": "lifespan.startup"})

            async def lifespan_send(m: dict) -> None:
                pass

            # kept: the lifespan task waits for its shutdown message until the run ends
            lifespan.append(
                asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, lifespan_send))
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sent.clear()
                await app(dict(scope), receive, send)
                if sent and sent[0]["status"] == 200:
                    break
                await asyncio.sleep(0.05)
        for _ in range(200):  # warm up
            await app(dict(scope), receive, send)
        status = sent[0]["status"]
        if status != 200:
            raise RuntimeError(f"{key}: {status} {sent[-1].get('body')!r}")
        best = float("inf")
        for _ in range(ROUNDS):
            sent.clear()
            start = time.thread_time()
            for _ in range(CALLS):
                await app(dict(scope), receive, send)
            best = min(best, (time.thread_time() - start) / CALLS)
        return best

    return asyncio.run(loop())


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
