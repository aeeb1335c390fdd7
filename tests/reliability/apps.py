"""Applications the reliability suite serves.

``modeldeploy serve modeldeploy.demo:service`` covers uvicorn and gunicorn; the Flask
adapter runs on gunicorn directly, as its users run it:
``gunicorn -k modeldeploy.servers.gunicorn.ThreadWorker tests.reliability.apps:flask_app``.
The other services misbehave on request, for the overload and fault cases.
"""

from __future__ import annotations

import time
from typing import Any

import flask

from modeldeploy import PrometheusMonitor, Service, predictor
from modeldeploy.adapters import wsgi
from modeldeploy.adapters.flask import blueprint
from modeldeploy.demo import SIGNATURE, predict_proba, service

flask_app = flask.Flask(__name__)
flask_app.register_blueprint(blueprint(service))

inline = Service(
    predictor(predict_proba, batched=True, signature=SIGNATURE, name="demo", version="1"),
    workers=0,
    monitors=[PrometheusMonitor()],
)
"""The demo's model computed on the event loop: uvicorn's direct lane answers /predict."""

COMPUTE_S = 0.02  # one call of the slow model


def _slow(x: Any) -> Any:
    time.sleep(COMPUTE_S)
    return x


slow = Service(
    predictor(_slow, name="slow"),
    workers=1,
    max_queue=4,
    retry_after=1.0,
    monitors=[PrometheusMonitor()],
)
"""Capacity: 1 / COMPUTE_S requests a second; more than 4 waiting are refused with 503."""

_leaked: list[bytearray] = []


def _faulty(x: Any) -> Any:
    fault = x.get("fault") if isinstance(x, dict) else None
    if fault == "raise":
        raise RuntimeError("the model failed")
    if fault == "hang":
        time.sleep(1.5)
    if fault == "leak":
        _leaked.append(bytearray(256 * 1024))  # never freed: a slow leak
    return {"ok": True}


class RaisingMonitor:
    """A monitor whose every hook raises."""

    def on_request_start(self, event: object, /) -> None:
        raise RuntimeError("monitor bug")

    def on_request_end(self, event: object, /) -> None:
        raise RuntimeError("monitor bug")

    def on_batch(self, event: object, /) -> None:
        raise RuntimeError("monitor bug")

    def on_model_loaded(self, event: object, /) -> None:
        raise RuntimeError("monitor bug")


faulty = Service(
    predictor(_faulty, name="faulty"),
    workers=2,
    timeout=0.5,
    monitors=[PrometheusMonitor(), RaisingMonitor()],
)
"""Raises, hangs past its 0.5 s deadline or leaks, as the request's ``fault`` says."""

broken = Service(predictor(_faulty, name="broken"), warmup={"fault": "raise"})
"""Fails to load: its warm-up raises."""

faulty_wsgi = wsgi(faulty)
"""The faulty service as a WSGI app, for gunicorn run by hand (``--max-requests``)."""

steady = Service(
    predictor(lambda x: time.sleep(0.2) or x, name="steady"),
    workers=8,
    max_queue=64,
    monitors=[PrometheusMonitor()],
)
"""200 ms a request, 8 at a time: requests are in flight when SIGTERM comes."""

BIG_ANSWER = 32 * 1024 * 1024  # bytes: far more than a socket's buffers hold
STREAM_PAUSE_S = 1.5  # between the two pieces of /stream


def _stream() -> Any:
    yield b"a"
    time.sleep(STREAM_PAUSE_S)  # the application making its next piece
    yield b"b"


def answers(environ: dict[str, Any], start_response: Any) -> Any:
    """A WSGI app: ``/big`` answers 32 MiB (``/big-pieces`` too, from a generator);
    ``/stream`` two bytes 1.5 s apart."""
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(BIG_ANSWER))])
        return [b"x" * BIG_ANSWER]
    if path == "/big-pieces":  # the same bytes from a generator, in four pieces
        start_response("200 OK", [("Content-Length", str(BIG_ANSWER))])
        return (b"x" * (BIG_ANSWER // 4) for _ in range(4))
    if path == "/stream":
        start_response("200 OK", [("Content-Length", "2")])
        return _stream()
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
