"""A service for the monitoring tests: batches on workers, and fails on request.

``modeldeploy serve tests.integration.monitored:service`` serves it, with a
PrometheusMonitor and a DriftMonitor. A row whose
first feature is negative makes the model raise (a ``prediction_error``, HTTP
500), so a test injects server errors with the body it sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import modeldeploy as md
from modeldeploy.monitors import DriftMonitor, PrometheusMonitor


def predict(rows: Sequence[Any]) -> list[float]:
    """Sum each row; a row whose first value is negative raises."""
    answers = []
    for row in rows:
        if row[0] < 0:
            raise ValueError("injected failure")
        answers.append(float(sum(row)))
    return answers


# training data the tests' traffic ([i, 1.0] rows) drifts from
TRAINING = [[float(i % 7), 0.5 * (i % 3)] for i in range(100)]
REFERENCE = md.reference_statistics(
    TRAINING, predict(TRAINING), input_names=["count", "weight"], output_names=["total"]
)

service = md.Service(
    md.predictor(predict, batched=True, name="monitored", version="1"),
    # a small window, every request counted: a few dozen requests give drift scores
    monitors=[PrometheusMonitor(), DriftMonitor(REFERENCE, sample_rate=1.0, window=20, chunks=2)],
    workers=2,
    max_batch_size=8,
)
