"""
The demo model ``make demo`` serves: an iris-like classifier in plain NumPy.

A small MLP, 4 features -> 16 hidden units (tanh) -> 3 class probabilities
(softmax), built at import from a fixed seed: nothing is downloaded and no
training library is needed. The hidden layer is random; the output layer is a
ridge regression fitted on synthetic flowers drawn around the published class
means of Fisher's iris data, so ``[5.1, 3.5, 1.4, 0.2]`` comes out ``setosa``
and ``[6.7, 3.0, 5.2, 2.3]`` ``virginica``. The weights are the same on every
run and every machine up to float rounding.

:data:`service` is ready to serve (``modeldeploy serve modeldeploy.demo:service``):
its requests are matrices of rows (``[[5.1, 3.5, 1.4, 0.2]]``), it speaks JSON and
msgpack, batches concurrent requests, and reports to a
:class:`~modeldeploy.PrometheusMonitor` on the default registry.

``python -m modeldeploy.demo --port 8000`` prints the curl commands that query it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Final

from ._extras import needs

with needs("modeldeploy.demo"):
    import numpy as np
    import numpy.typing as npt

from .messages import Signature, TensorSpec
from .monitors import PrometheusMonitor
from .predictors import predictor
from .serializers import get
from .service import Service

__all__ = [
    "CLASSES",
    "SEED",
    "SIGNATURE",
    "curl_commands",
    "main",
    "predict_proba",
    "service",
]

SEED: Final = 20240601
"""
The seed every weight of the demo model comes from.

.. versionadded:: 0.1.0
"""

CLASSES: Final = ("setosa", "versicolor", "virginica")
"""
The class of each output probability, in order.

.. versionadded:: 0.1.0
"""

# the ignores: attrs' mypy plugin cannot type Signature's bare `converter=tuple`
SIGNATURE: Final = Signature(
    inputs=(TensorSpec("features", "float32", (-1, 4)),),
    outputs=(TensorSpec("probabilities", "float32", (-1, 3)),),
)
"""
One request is a matrix of flowers: ``features`` (rows, 4) in, ``probabilities`` (rows, 3) out.

The features are sepal length, sepal width, petal length and petal width, in cm.

.. versionadded:: 0.1.0
"""

# Fisher's iris data, per class: feature means and standard deviations (cm)
_MEANS: Final = np.array(
    [[5.006, 3.428, 1.462, 0.246], [5.936, 2.770, 4.260, 1.326], [6.588, 2.974, 5.552, 2.026]]
)
_STDS: Final = np.array(
    [[0.352, 0.379, 0.174, 0.105], [0.516, 0.314, 0.470, 0.198], [0.636, 0.322, 0.552, 0.275]]
)
_HIDDEN: Final = 16
_SAMPLES_PER_CLASS: Final = 200
_RIDGE: Final = 1e-2
_TARGET_LOGIT: Final = 6.0  # the fitted score of the true class; the softmax turns it into ~0.99

_Array = npt.NDArray[np.float32]


def _build() -> tuple[_Array, _Array, _Array, _Array, _Array, _Array]:
    """Draw the hidden layer, then fit the output layer on synthetic flowers."""
    rng = np.random.default_rng(SEED)
    center = _MEANS.mean(axis=0)
    scale = _MEANS.std(axis=0) + _STDS.mean(axis=0)
    w1 = rng.standard_normal((4, _HIDDEN))
    b1 = rng.standard_normal(_HIDDEN) * 0.5
    flowers = np.concatenate(
        [
            m + s * rng.standard_normal((_SAMPLES_PER_CLASS, 4))
            for m, s in zip(_MEANS, _STDS, strict=True)
        ]
    )
    labels = np.repeat(np.arange(len(CLASSES)), _SAMPLES_PER_CLASS)
    hidden = np.tanh(((flowers - center) / scale) @ w1 + b1)
    design = np.hstack([hidden, np.ones((len(hidden), 1))])
    targets = np.eye(len(CLASSES))[labels] * _TARGET_LOGIT
    # ridge regression in closed form: deterministic, no optimiser, no library
    gram = design.T @ design + _RIDGE * np.eye(design.shape[1])
    weights = np.linalg.solve(gram, design.T @ targets)
    arrays = (center, scale, w1, b1, weights[:-1], weights[-1])
    return tuple(np.asarray(a, dtype=np.float32) for a in arrays)  # type: ignore[return-value]


_CENTER, _SCALE, _W1, _B1, _W2, _B2 = _build()


def predict_proba(features: npt.ArrayLike) -> _Array:
    """
    Return the class probabilities of each flower.

    Args:
        features: Rows of 4 features (sepal length, sepal width, petal length,
            petal width, in cm), shape ``(rows, 4)``.

    Returns:
        A float32 array of shape ``(rows, 3)``; each row sums to 1 and follows
        :data:`CLASSES`.

    Example:
        >>> from modeldeploy.demo import CLASSES, predict_proba
        >>> CLASSES[int(predict_proba([[5.1, 3.5, 1.4, 0.2]]).argmax())]
        'setosa'

    .. versionadded:: 0.1.0
    """
    x = np.asarray(features, dtype=np.float32)
    hidden = np.tanh(((x - _CENTER) / _SCALE) @ _W1 + _B1)
    logits = hidden @ _W2 + _B2
    logits -= logits.max(axis=-1, keepdims=True)  # softmax without overflow
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True), dtype=np.float32)


service: Final = Service(
    predictor(predict_proba, batched=True, signature=SIGNATURE, name="demo", version="1"),
    serializers=[get("json"), get("msgpack")],
    monitors=[PrometheusMonitor()],
    workers=2,
    max_batch_size=32,
    batch_rows=True,
    timeout=5.0,
)
"""
The demo :class:`~modeldeploy.Service`: model ``demo`` version ``1``.

Concurrent requests are concatenated row-wise into one model call
(``batch_rows=True``, up to 32 requests); metrics go to the default Prometheus
registry, which ``/metrics`` exposes.

.. versionadded:: 0.1.0
"""


def curl_commands(host: str = "127.0.0.1", port: int = 8000, python: str = "python3") -> str:
    """
    Return ready-to-paste shell commands that query the demo served on *host*:*port*.

    One command each for JSON on ``/predict``, msgpack on ``/predict`` (the body
    is packed and the answer unpacked by *python*, which needs modeldeploy), the
    Open Inference Protocol (V2) JSON API, and ``/metrics``; each preceded by a
    ``#`` comment line.

    Args:
        host: The address the demo listens on.
        port: Its port.
        python: The interpreter the msgpack command runs.

    .. versionadded:: 0.1.0
    """
    url = f"http://{host}:{port}"
    py = shlex.quote(python)
    pack = "import sys, msgpack; sys.stdout.buffer.write(msgpack.packb([[6.3, 3.3, 6.0, 2.5]]))"
    unpack = "import sys, modeldeploy as md; print(md.MsgPack().loads(sys.stdin.buffer.read()))"
    v2_body = (
        '{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], '
        '"data": [5.9, 3.0, 4.2, 1.5]}]}'
    )
    json_curl = (
        f"curl -s {url}/predict -H 'Content-Type: application/json' "
        "-d '[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]'"
    )
    msgpack_curl = (
        f"{py} -c {shlex.quote(pack)} | curl -s {url}/predict "
        "-H 'Content-Type: application/msgpack' -H 'Accept: application/msgpack' "
        f"--data-binary @- | {py} -c {shlex.quote(unpack)}"
    )
    v2_curl = (
        f"curl -s {url}/v2/models/demo/infer -H 'Content-Type: application/json' -d '{v2_body}'"
    )
    lines = [
        f"# JSON: one row per flower -> one row of probabilities ({', '.join(CLASSES)})",
        json_curl,
        "# msgpack both ways: Python packs the body and unpacks the answer",
        msgpack_curl,
        "# Open Inference Protocol (KServe V2), JSON tensors",
        v2_curl,
        "# Prometheus metrics",
        f"curl -s {url}/metrics",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Print the demo's curl commands: ``python -m modeldeploy.demo --port 8000``.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status, 0.

    .. versionadded:: 0.1.0
    """
    parser = argparse.ArgumentParser(
        prog="python -m modeldeploy.demo",
        description="Print curl commands that query the demo model served on HOST:PORT.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the demo's address")
    parser.add_argument("--port", type=int, default=8000, help="the demo's port")
    options = parser.parse_args(argv)
    python = sys.executable or "python3"
    relative = os.path.relpath(python)
    if os.sep in relative and not relative.startswith(".."):
        python = relative  # `.venv/bin/python` reads better when pasted from the repo
    print(
        f"modeldeploy demo: model 'demo', {len(CLASSES)} iris classes, "
        f"on http://{options.host}:{options.port}\n"
    )
    print(curl_commands(options.host, options.port, python))
    print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
