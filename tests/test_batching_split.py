"""A custom split that answers with the wrong count fails the batch, never the worker."""

from __future__ import annotations

import pytest

import modeldeploy as md


def as_list(items):
    return list(items), len(items)


@pytest.mark.parametrize("drop", [1, -1], ids=["one short", "one extra"])
def test_wrong_count_from_a_custom_split_is_a_prediction_error(drop):
    def split(outputs, count):
        return outputs[:-1] if drop == 1 else [*outputs, outputs[0]]

    service = md.Service(
        md.predictor(lambda batch: [2 * x for x in batch], batched=True),
        workers=1,
        max_batch_size=8,
        collate=as_list,
        split=split,
    ).start()
    try:
        # before the fix zip(strict=True) raised in the worker thread: no answer ever came
        error = service.submit(1).exception(timeout=10)
        assert isinstance(error, md.PredictionError)
        assert isinstance(error.__cause__, Exception)
        # the worker survived and serves the next request
        assert isinstance(service.submit(2).exception(timeout=10), md.PredictionError)
    finally:
        assert service.close(timeout=10)
