"""Dynamic batching: grouping, collation, per-item failure isolation, deadlines, close."""

from __future__ import annotations

import asyncio
import random
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modeldeploy as md
from modeldeploy.testing import RecordingMonitor


class HeldModel:
    """A batched model whose first call waits until released, so later requests queue up."""

    def __init__(self, fn=lambda batch: [2 * x for x in batch]):
        self.fn = fn
        self.calls = []
        self.first_inside = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, batch):
        with self._lock:
            self.calls.append(batch)
            first = len(self.calls) == 1
        if first:
            self.first_inside.set()
            assert self.release.wait(10)
        return self.fn(batch)


def held_service(model, **kwargs):
    options = {"workers": 1, "max_batch_size": 8, "max_batch_delay": 0.0, **kwargs}
    return md.Service(md.predictor(model, batched=True), **options)


def queue_behind_first(service, model, items):
    """Submit a first request and hold it in the model, then queue *items* behind it."""
    first = service.submit(items[0])
    assert model.first_inside.wait(10)
    rest = [service.submit(x) for x in items[1:]]
    model.release.set()
    return [first, *rest]


class TestGrouping:
    def test_queued_requests_are_computed_together(self):
        model = HeldModel()
        monitor = RecordingMonitor()
        with held_service(model, monitors=[monitor]) as service:
            futures = queue_behind_first(service, model, list(range(9)))
            assert [f.result(timeout=10) for f in futures] == [2 * i for i in range(9)]
        assert [len(c) for c in model.calls] == [1, 8]
        assert [b.size for b in monitor.batches] == [1, 8]
        assert all(b.queue_wait_s >= 0 and b.compute_s >= 0 for b in monitor.batches)

    def test_batches_never_exceed_max_batch_size(self):
        model = HeldModel()
        with held_service(model, max_batch_size=3) as service:
            futures = queue_behind_first(service, model, list(range(8)))
            assert [f.result(timeout=10) for f in futures] == [2 * i for i in range(8)]
        assert [len(c) for c in model.calls] == [1, 3, 3, 1]

    def test_full_batch_does_not_wait_for_the_delay(self):
        model = HeldModel()
        model.release.set()
        # a delay far longer than the test may take: only a full batch can end it early
        with held_service(model, max_batch_size=4, max_batch_delay=600.0) as service:
            futures = [service.submit(i) for i in range(4)]
            assert [f.result(timeout=10) for f in futures] == [0, 2, 4, 6]
            assert [len(c) for c in model.calls] == [4]
            service.close(timeout=10)

    def test_lone_request_is_sent_after_the_delay(self):
        model = HeldModel()
        model.release.set()
        with held_service(model, max_batch_size=64, max_batch_delay=0.01) as service:
            assert service.predict(21, timeout=10) == 42
        assert [len(c) for c in model.calls] == [1]

    def test_batching_needs_a_queue(self):
        with pytest.raises(ValueError, match="workers >= 1"):
            md.Service(lambda x: x, workers=0, max_batch_size=4)


class TestCollation:
    def test_same_shape_arrays_are_stacked_and_split_back(self):
        model = HeldModel(fn=lambda batch: batch * 10)
        items = [np.full(3, i, dtype=np.float32) for i in range(5)]
        with held_service(model) as service:
            futures = queue_behind_first(service, model, items)
            results = [f.result(timeout=10) for f in futures]
        assert all(isinstance(c, np.ndarray) for c in model.calls)
        assert model.calls[1].shape == (4, 3)
        for item, result in zip(items, results, strict=True):
            np.testing.assert_array_equal(result, item * 10)

    def test_mixed_inputs_arrive_as_a_list(self):
        model = HeldModel(fn=lambda batch: [len(x) for x in batch])
        items = ["a", [1, 2], np.zeros(3), "abcd"]
        with held_service(model) as service:
            futures = queue_behind_first(service, model, items)
            assert [f.result(timeout=10) for f in futures] == [1, 2, 3, 4]
        assert isinstance(model.calls[1], list)

    def test_requests_of_several_rows_are_concatenated_and_split(self):
        model = HeldModel(fn=lambda rows: rows.sum(axis=1))
        items = [np.arange(n * 2, dtype=np.int64).reshape(n, 2) + n for n in (1, 3, 2, 4)]
        with held_service(model, batch_rows=True) as service:
            futures = queue_behind_first(service, model, items)
            results = [f.result(timeout=10) for f in futures]
        assert model.calls[1].shape == (9, 2)
        for item, result in zip(items, results, strict=True):
            np.testing.assert_array_equal(result, item.sum(axis=1))

    def test_custom_collate_and_split(self):
        def pad(items):  # variable-length sequences, padded into one array
            lengths = [len(item) for item in items]
            batch = np.zeros((len(items), max(lengths)), dtype=np.int64)
            for row, item in zip(batch, items, strict=True):
                row[: len(item)] = item
            return batch, lengths

        def trim(outputs, lengths):
            return [list(row[:n]) for row, n in zip(outputs, lengths, strict=True)]

        model = HeldModel(fn=lambda batch: batch * 2)
        service = md.Service(
            md.predictor(model, batched=True),
            workers=1,
            max_batch_size=8,
            collate=pad,
            split=trim,
        )
        items = [[1], [2, 3, 4], [5, 6]]
        with service:
            futures = queue_behind_first(service, model, items)
            assert [f.result(timeout=10) for f in futures] == [[2], [4, 6, 8], [10, 12]]
        assert model.calls[1].shape == (2, 3)


class TestIsolation:
    @staticmethod
    def picky(batch):
        if any(x < 0 for x in batch):
            raise ValueError("negative input in batch")
        return [2 * x for x in batch]

    @pytest.mark.parametrize(
        "items",
        [
            [0, 1, 2, -3, 4, 5, 6, 7, 8],
            [0, -1, 2, -3, 4, 5, -6, 7, -8],
            [0, -1, -2, -3, -4, -5, -6, -7, -8],
        ],
        ids=["one bad", "several bad", "all bad"],
    )
    def test_bad_items_fail_alone(self, items):
        model = HeldModel(fn=self.picky)
        with held_service(model) as service:
            futures = queue_behind_first(service, model, items)
            for x, future in zip(items, futures, strict=True):
                if x < 0:
                    error = future.exception(timeout=10)
                    assert isinstance(error, md.PredictionError)
                    assert isinstance(error.__cause__, ValueError)
                else:
                    assert future.result(timeout=10) == 2 * x

    def test_wrong_length_fails_the_batch_never_misaligns(self):
        model = HeldModel(fn=lambda batch: [2 * x for x in batch][:-1] or [0, 0])
        with held_service(model) as service:
            futures = queue_behind_first(service, model, [1, 2, 3, 4])
            for future in futures:
                assert isinstance(future.exception(timeout=10), md.PredictionError)


class TestDeadlinesAndClose:
    def test_expired_request_is_not_put_in_a_batch(self):
        model = HeldModel()
        with held_service(model) as service:
            first = service.submit(1)
            assert model.first_inside.wait(10)
            doomed = service.submit(2, timeout=0.01)
            alive = service.submit(3)
            with pytest.raises(md.DeadlineExceededError):  # a later deadline passed, so 2's did
                service.predict(4, timeout=0.05)
            model.release.set()
            assert first.result(timeout=10) == 2
            assert isinstance(doomed.exception(timeout=10), md.DeadlineExceededError)
            assert alive.result(timeout=10) == 6
        assert all(2 not in list(c) and 4 not in list(c) for c in model.calls)

    def test_close_finishes_partial_batches(self):
        model = HeldModel()
        model.release.set()
        # the collector would wait 600 s to fill a batch of 4; close() must not
        service = held_service(model, max_batch_size=4, max_batch_delay=600.0).start()
        futures = [service.submit(i) for i in range(7)]  # one full batch, one partial
        assert service.close(timeout=20) is True
        assert [f.result(timeout=0) for f in futures] == [2 * i for i in range(7)]
        assert sorted(len(c) for c in model.calls) == [3, 4]


def double_rows(batch):
    return np.asarray(batch) * 2 + 1


@settings(max_examples=25)
@given(
    inputs=st.lists(st.lists(st.integers(-1000, 1000), min_size=1, max_size=20), min_size=1),
    max_batch_size=st.integers(1, 16),
    workers=st.integers(1, 3),
)
def test_every_answer_lands_at_its_caller(inputs, max_batch_size, workers):
    """Many callers at once, random inputs: each answer is the model applied to its input."""
    service = md.Service(
        md.predictor(double_rows, batched=True),
        workers=workers,
        max_batch_size=max_batch_size,
        max_batch_delay=0.001,
    )
    start = threading.Barrier(len(inputs))
    answers = {}

    def caller(index, values):
        start.wait(10)
        answers[index] = [service.predict(np.int64(v), timeout=10) for v in values]

    with service:
        threads = [
            threading.Thread(target=caller, args=(i, values)) for i, values in enumerate(inputs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert answers == {i: [2 * v + 1 for v in values] for i, values in enumerate(inputs)}


def test_asyncio_callers_are_batched_too():
    monitor = RecordingMonitor()

    async def main(service):
        return await asyncio.gather(*(service.apredict(np.int64(i)) for i in range(200)))

    with md.Service(
        md.predictor(double_rows, batched=True),
        workers=1,
        max_batch_size=32,
        max_batch_delay=0.002,
        monitors=[monitor],
    ) as service:
        assert asyncio.run(main(service)) == [2 * i + 1 for i in range(200)]
    assert sum(b.size for b in monitor.batches) == 200


def test_collectors_and_idle_workers_lose_no_request():
    """
    Workers blocked in get() beside one collecting with timeouts lose no job.

    ``queue.SimpleQueue`` lost wake-ups under exactly this mix (a job sat admitted,
    out of the queue, until its caller's deadline): within ~100 rounds like these.
    """
    rng = random.Random(0)
    for _ in range(150):
        callers = rng.randint(1, 30)
        service = md.Service(
            md.predictor(double_rows, batched=True),
            workers=rng.randint(2, 3),
            max_batch_size=rng.randint(2, 16),
            max_batch_delay=0.001,
        ).start()
        start = threading.Barrier(callers)
        answers = {}

        def caller(index, service=service, start=start, answers=answers):
            start.wait(10)
            answers[index] = [service.predict(np.int64(v), timeout=10) for v in range(8)]

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert service.close(timeout=10) is True
        assert answers == {i: [2 * v + 1 for v in range(8)] for i in range(callers)}
