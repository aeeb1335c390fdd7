"""A service for the monitoring tests: batches on workers, and fails on request.

``modeldeploy serve tests.integration.monitored:service`` serves it. A row whose
first feature is negative makes the model raise (a ``prediction_error``, HTTP
500), so a test injects server errors with the body it sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import modeldeploy as md
from modeldeploy.monitors import PrometheusMonitor


def predict(rows: Sequence[Any]) -> list[float]:
    """Sum each row; a row whose first value is negative raises."""
    answers = []
    for row in rows:
        if row[0] < 0:
            raise ValueError("injected failure")
        answers.append(float(sum(row)))
    return answers


service = md.Service(
    md.predictor(predict, batched=True, name="monitored", version="1"),
    monitors=[PrometheusMonitor()],
    workers=2,
    max_batch_size=8,
)
