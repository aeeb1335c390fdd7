"""A deadline shorter than max_batch_delay ends the batch's wait instead of expiring in it."""

from __future__ import annotations

import modeldeploy as md
from modeldeploy.testing import RecordingMonitor


def double(batch):
    return [2 * x for x in batch]


def patient_service(**kwargs):
    # a delay far longer than any test may take: only a deadline can end the wait early
    options = {"workers": 1, "max_batch_size": 64, "max_batch_delay": 600.0, **kwargs}
    return md.Service(md.predictor(double, batched=True), **options)


def test_lone_request_with_a_short_deadline_is_answered():
    # before the fix the worker waited until this deadline, then dropped the request
    with patient_service() as service:
        assert service.predict(21, timeout=10) == 42


def test_a_later_short_deadline_ends_the_wait_for_the_whole_batch():
    monitor = RecordingMonitor()
    with patient_service(monitors=[monitor]) as service:
        patient = service.submit(1)  # no deadline: alone it would wait the full delay
        hurried = service.submit(2, timeout=10)
        assert hurried.result(timeout=20) == 4
        assert patient.result(timeout=20) == 2
    assert sum(batch.size for batch in monitor.batches) == 2
