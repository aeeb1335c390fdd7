"""The application the end-to-end tests serve: ``uvicorn tests.adapters.app:asgi_app``.

Three services on one HTTPApp, metrics on a registry of their own:

* ``mlp``: a small float32 MLP, 4 -> 8 -> 3, fixed seed, with a signature
  (validation, V2 metadata), answered by worker threads;
* ``echo``: returns its input (an array, or a mapping of name to array), no
  signature, so it takes every V2 datatype; inline (``workers=0``);
* ``slow``: sleeps its input's seconds, for deadlines.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

import modeldeploy as md
from modeldeploy.adapters import asgi, wsgi
from modeldeploy.http import HTTPApp
from modeldeploy.monitors import PrometheusMonitor

MAX_BODY_SIZE = 4 * 1024 * 1024

_rng = np.random.default_rng(0)
W1 = _rng.standard_normal((4, 8)).astype(np.float32)
W2 = _rng.standard_normal((8, 3)).astype(np.float32)


def mlp(x: np.ndarray) -> np.ndarray:
    """One item: float32 (4,) -> float32 (3,)."""
    return np.tanh(x @ W1) @ W2


def echo(x: Any) -> Any:
    return x


def slow(x: Any) -> float:
    time.sleep(float(np.asarray(x)))
    return 0.0


MLP_SIGNATURE = md.Signature(
    inputs=[md.TensorSpec("x", "float32", (4,))], outputs=[md.TensorSpec("y", "float32", (3,))]
)

registry = CollectorRegistry()
monitor = PrometheusMonitor(registry=registry)
services = [
    md.Service(
        md.predictor(mlp, signature=MLP_SIGNATURE), name="mlp", workers=2, monitors=[monitor]
    ),
    md.Service(echo, name="echo", workers=0, monitors=[monitor]),
    md.Service(slow, name="slow", workers=1, monitors=[monitor]),
]
app = HTTPApp(services, registry=registry, max_body_size=MAX_BODY_SIZE)
asgi_app = asgi(app)
wsgi_app = wsgi(app)
