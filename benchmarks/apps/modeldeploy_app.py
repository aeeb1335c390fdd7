"""
modeldeploy's contestant, for uvicorn (``modeldeploy_app:asgi_app``) and gunicorn (``:wsgi_app``).

One :class:`~modeldeploy.Service` as a user would configure it for each model,
with a :class:`~modeldeploy.PrometheusMonitor` (observability is part of what is
measured), a signature (requests are validated and become float32 arrays, V2
requests name their tensors), JSON and msgpack, behind the library's own ASGI
and WSGI adapters:

* ``tiny``: ``workers=0``: the model takes microseconds, so it runs on the
  thread that has the request, and the ASGI app is ``inline=True`` (on the
  event loop, as the hand-written app does); ``BENCH_INLINE=0`` hands it to the
  loop's executor instead.
* ``heavy``: dynamic batching: ``workers=1, max_batch_size=64,
  max_batch_delay=0``: the queue collects the requests that arrive while a
  batch computes, so no request waits for a batch to fill.
"""

from __future__ import annotations

import os

from models import from_env
from prometheus_client import CollectorRegistry

import modeldeploy as md
from modeldeploy.adapters import asgi, wsgi
from modeldeploy.http import HTTPApp

model = from_env()
registry = CollectorRegistry()
signature = md.Signature(
    inputs=[md.TensorSpec("x", "float32", (model.n_in,))],
    outputs=[md.TensorSpec("y", "float32", (model.n_out,))],
)
if model.name == "tiny":
    options: dict[str, object] = {"workers": 0}
    predictor = md.predictor(model, signature=signature, name="mlp")
else:
    options = {"workers": 1, "max_batch_size": 64, "max_batch_delay": 0.0}
    predictor = md.predictor(model, batched=True, signature=signature, name="mlp")
# BENCH_MONITOR=0 serves without the monitor, to measure what observability costs
monitors = (
    [md.PrometheusMonitor(registry=registry)] if os.environ.get("BENCH_MONITOR") != "0" else []
)
service = md.Service(predictor, monitors=monitors, max_queue=4096, **options)
app = HTTPApp(service, registry=registry)
inline = model.name == "tiny" and os.environ.get("BENCH_INLINE", "1") == "1"
asgi_app = asgi(app, inline=inline)
wsgi_app = wsgi(app)
