"""
How a batch's answers reach their callers, and how asyncio jobs reach the queue.

Blocking callers of one batch are woken in a chain (each wakes the next), so a
caller that gave up must not break the chain for the ones after it. An event
loop's jobs are staged and queued together when its pass ends, so close() and
cancellation must still find them.
"""

from __future__ import annotations

import asyncio
import random
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modeldeploy as md
from modeldeploy._workers import Waiter, wake_chain
from modeldeploy.testing import RecordingMonitor


def answer(waiters: list[Waiter], outcomes: list[tuple[bool, object]]) -> None:
    """What the worker does: every answer set first, then one wake-up."""
    for waiter, (ok, value) in zip(waiters, outcomes, strict=True):
        waiter.ok, waiter.value = ok, value
    wake_chain(waiters)


def wait_in_threads(waiters: list[Waiter], order: list[int], timeout: float) -> dict:
    """Wait on each waiter from its own thread, started in *order*; index -> wait()'s result."""
    got: dict[int, tuple[bool, bool, object]] = {}

    def wait(index: int) -> None:
        waiter = waiters[index]
        answered = waiter.wait(timeout)
        got[index] = (answered, waiter.ok, waiter.value)

    threads = [threading.Thread(target=wait, args=(i,)) for i in order]
    for thread in threads:
        thread.start()
    return got, threads


@settings(max_examples=30, deadline=None)
@given(
    gone=st.lists(st.booleans(), min_size=1, max_size=12),
    failed=st.data(),
    shuffle=st.randoms(use_true_random=False),
)
def test_every_waiting_caller_of_a_chain_gets_its_own_answer(gone, failed, shuffle):
    """Callers that gave up before the answer (anywhere in the chain) stop nobody after them."""
    waiters = [Waiter() for _ in gone]
    for waiter, left in zip(waiters, gone, strict=True):
        if left:
            assert waiter.wait(0.0) is False  # timed out before the batch was computed
    errors = failed.draw(st.lists(st.booleans(), min_size=len(gone), max_size=len(gone)))
    outcomes = [
        (False, md.PredictionError(f"item {i}")) if error else (True, i * 10)
        for i, error in enumerate(errors)
    ]
    staying = [i for i, left in enumerate(gone) if not left]
    order = list(staying)
    shuffle.shuffle(order)
    got, threads = wait_in_threads(waiters, order, timeout=10)
    answer(waiters, outcomes)
    for thread in threads:
        thread.join(10)
    assert sorted(got) == staying
    for index in staying:
        answered, ok, value = got[index]
        assert answered is True
        assert (ok, value) == outcomes[index]


def test_callers_giving_up_while_the_chain_passes_never_stall_it():
    """Timeouts racing the wake-ups: every caller still waiting is woken, none twice."""
    rng = random.Random(0)
    for _ in range(150):
        size = rng.randint(2, 10)
        waiters = [Waiter() for _ in range(size)]
        # some give up about when the answers come, the others wait long enough
        timeouts = [rng.choice([rng.uniform(0, 0.002), 10.0]) for _ in range(size)]
        got: dict[int, bool] = {}
        start = threading.Barrier(size + 1)

        def wait(index, waiters=waiters, timeouts=timeouts, got=got, start=start):
            start.wait(10)
            got[index] = waiters[index].wait(timeouts[index])

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(size)]
        for thread in threads:
            thread.start()
        start.wait(10)
        answer(waiters, [(True, i) for i in range(size)])
        for thread in threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in threads)
        for index in range(size):
            if timeouts[index] == 10.0:
                assert got[index] is True
            if got[index]:
                assert (waiters[index].ok, waiters[index].value) == (True, index)


def test_an_interrupted_caller_passes_the_chain_on():
    """A KeyboardInterrupt in one caller's wait leaves the callers after it answered."""

    class InterruptedLock:
        def __init__(self, lock):
            self.lock = lock

        def acquire(self, blocking=True, timeout=-1):
            if blocking:
                raise KeyboardInterrupt
            return self.lock.acquire(blocking=False)

        def release(self):
            self.lock.release()

    first, second = Waiter(), Waiter()
    first._done = InterruptedLock(first._done)
    with pytest.raises(KeyboardInterrupt):
        first.wait(None)
    assert first.gone
    answer([first, second], [(True, "a"), (True, "b")])
    assert second.wait(5) is True
    assert second.value == "b"


def test_a_caller_interrupted_just_after_its_answer_passes_the_chain_on():
    """The interrupt lands after the lock was taken: the chain still reaches the next caller."""

    class TakenThenInterrupted:
        def __init__(self, lock):
            self.lock = lock

        def acquire(self, blocking=True, timeout=-1):
            if blocking:
                self.lock.acquire()
                raise KeyboardInterrupt
            return self.lock.acquire(blocking=False)

        def release(self):
            self.lock.release()

    first, second = Waiter(), Waiter()
    first._done = TakenThenInterrupted(first._done)
    answer([first, second], [(True, "a"), (True, "b")])
    with pytest.raises(KeyboardInterrupt):
        first.wait(None)
    assert second.wait(5) is True
    assert second.value == "b"


def fails_on_negatives(batch):
    batch = np.asarray(batch)
    if (batch < 0).any():
        raise ValueError("negative input")
    return batch * 3


def test_threads_of_one_batch_get_their_own_results_and_errors():
    """Blocking callers woken in a chain: values and isolated failures land where they belong."""
    monitor = RecordingMonitor()
    inputs = [v if v % 5 else -v - 1 for v in range(40)]  # every fifth one fails
    service = md.Service(
        md.predictor(fails_on_negatives, batched=True),
        workers=1,
        max_batch_size=16,
        max_batch_delay=0.01,
        monitors=[monitor],
    )
    start = threading.Barrier(len(inputs))
    got: dict[int, object] = {}

    def caller(index: int) -> None:
        start.wait(10)
        try:
            got[index] = service.predict(np.int64(inputs[index]), timeout=10)
        except md.PredictionError as exc:
            got[index] = exc

    with service:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(inputs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    failed = [i for i, value in got.items() if isinstance(value, md.PredictionError)]
    assert sorted(failed) == [i for i, v in enumerate(inputs) if v < 0]
    assert {i: v for i, v in got.items() if i not in failed} == {
        i: 3 * v for i, v in enumerate(inputs) if v >= 0
    }
    assert sum(b.size for b in monitor.batches) >= len(inputs)
    assert [r.code for r in monitor.finished].count("prediction_error") == len(failed)


def batched_doubles(**options):
    defaults = {"workers": 1, "max_batch_size": 64, "max_batch_delay": 0.0}
    return md.Service(
        md.predictor(lambda batch: [2 * x for x in batch], batched=True),
        **{**defaults, **options},
    )


def test_jobs_one_loop_pass_submits_make_one_batch():
    """Without any delay, the requests of one pass of the loop are not split up."""
    monitor = RecordingMonitor()

    async def main(service):
        return await asyncio.gather(*(service.apredict(i) for i in range(50)))

    with batched_doubles(monitors=[monitor]) as service:
        assert asyncio.run(main(service)) == [2 * i for i in range(50)]
    assert [b.size for b in monitor.batches] == [50]


def test_close_on_the_loop_serves_the_jobs_it_staged():
    """close() blocking the loop before its pass ended still computes what it staged."""

    async def main(service):
        task = asyncio.ensure_future(service.apredict(21))
        await asyncio.sleep(0)  # the task ran up to its await: staged, not queued yet
        assert service._pool._queue.qsize() == 0
        assert service.queue_depth() == 1
        assert service.close(timeout=10) is True  # on the loop's thread
        return await asyncio.wait_for(task, 10)

    service = batched_doubles().start()
    assert asyncio.run(main(service)) == 42


def test_a_staged_job_cancelled_before_its_pass_ended_is_released_uncomputed():
    calls = []
    monitor = RecordingMonitor()

    def model(batch):
        calls.append(list(batch))
        return [2 * x for x in batch]

    async def main(service):
        task = asyncio.ensure_future(service.apredict(1))
        await asyncio.sleep(0)  # staged
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await service.apredict(2) == 4

    service = md.Service(
        md.predictor(model, batched=True),
        workers=1,
        max_batch_size=8,
        max_batch_delay=0.0,
        monitors=[monitor],
    )
    with service:
        asyncio.run(main(service))
    assert calls == [[2]]
    assert sorted(r.code for r in monitor.finished) == ["cancelled", "ok"]
