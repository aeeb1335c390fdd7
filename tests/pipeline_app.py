"""What tests/test_pipeline.py serves: ``uvicorn tests.pipeline_app:asgi_app``.

* ``opt``: one required FP32 input ``x`` and two optional ones, ``n`` (INT64) and
  ``tag`` (BYTES); it answers ``y = 2 * x`` and ``got``, the names of the inputs it
  received, so a test sees exactly what reached the model;
* ``raw``: answers its BYTES input as it is, any bytes (not only UTF-8).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

import modeldeploy as md
from modeldeploy.adapters import asgi
from modeldeploy.http import HTTPApp
from modeldeploy.monitors import PrometheusMonitor

OPT_SIGNATURE = md.Signature(
    inputs=[
        md.TensorSpec("x", "float32", (-1,)),
        md.TensorSpec("n", "int64", (-1,), optional=True),
        md.TensorSpec("tag", "bytes", (-1,), optional=True),
    ],
    outputs=[md.TensorSpec("y", "float32", (-1,)), md.TensorSpec("got", "bytes", (-1,))],
)


def opt(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    got = np.array([name.encode() for name in sorted(inputs)], dtype=object)
    return {"y": inputs["x"] * 2, "got": got}


def raw(x: np.ndarray) -> np.ndarray:
    return x


def services(monitors: list[object]) -> list[md.Service]:
    """Fresh services of this app, with *monitors* on each."""
    return [
        md.Service(md.predictor(opt, signature=OPT_SIGNATURE), name="opt", monitors=monitors),
        md.Service(raw, name="raw", workers=0, monitors=monitors),
    ]


registry = CollectorRegistry()
app = HTTPApp(services([PrometheusMonitor(registry=registry)]), registry=registry)
asgi_app = asgi(app)
