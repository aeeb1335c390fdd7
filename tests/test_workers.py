"""The queue/worker stage's parts on their own: admission counting."""

from __future__ import annotations

import threading

import pytest
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import modeldeploy as md
from modeldeploy._workers import Admission


class AdmissionMachine(RuleBasedStateMachine):
    """Admission against a plain counter: admits up to the limit, never more, never less."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = 3
        self.admission = Admission(self.limit, retry_after=2.5)
        self.held = 0

    @rule()
    def acquire(self) -> None:
        if self.held < self.limit:
            self.admission.acquire()
            self.held += 1
        else:
            with pytest.raises(md.OverloadedError) as info:
                self.admission.acquire()
            assert info.value.retry_after == 2.5

    @precondition(lambda self: self.held > 0)
    @rule()
    def release(self) -> None:
        self.admission.release()
        self.held -= 1

    @invariant()
    def counts(self) -> None:
        assert self.admission.count == self.held


TestAdmissionCounts = AdmissionMachine.TestCase


def test_closed_admission_refuses_and_keeps_its_count():
    admission = Admission(2, retry_after=1.0)
    admission.acquire()
    assert admission.close(timeout=0) is False  # one still running
    with pytest.raises(md.NotReadyError):
        admission.acquire()
    assert admission.count == 1
    admission.release()
    assert admission.count == 0
    assert admission.close(timeout=0) is True


def test_close_waits_for_the_last_release():
    admission = Admission(4, retry_after=1.0)
    held = 3
    for _ in range(held):
        admission.acquire()
    closed = threading.Event()
    result: list[bool] = []

    def close() -> None:
        result.append(admission.close(timeout=None))
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    for _ in range(held):
        assert not closed.is_set()
        admission.release()
    closer.join(timeout=10)
    assert result == [True]


def _race_close_once() -> tuple[bool, int, int]:
    """Acquire on one thread while closing on this one; return what close() saw."""
    admission = Admission(8, retry_after=1.0)
    start = threading.Barrier(2)
    admitted: list[bool] = []

    def racer() -> None:
        start.wait()
        try:
            admission.acquire()
        except md.NotReadyError:
            admitted.append(False)
            return
        admitted.append(True)
        admission.release()

    thread = threading.Thread(target=racer)
    thread.start()
    start.wait()
    drained = admission.close(timeout=None)
    count_when_closed = admission.count
    thread.join(timeout=10)
    return drained, count_when_closed, len(admitted)


def test_acquire_racing_close_is_either_refused_or_waited_for():
    """No request is admitted after close() returned (it would never be served)."""
    for _ in range(200):
        drained, count_when_closed, attempts = _race_close_once()
        # once close() returned, the racer holds no place: it was refused, or
        # close() waited for its release
        assert (drained, count_when_closed, attempts) == (True, 0, 1)


def test_a_job_put_after_stop_fails_at_once_instead_of_waiting_forever():
    """close(timeout) may stop the pool between a request's admission and its put."""
    from modeldeploy._workers import Job, Reports, Waiter, WorkerPool

    service = md.Service(lambda x: x, workers=1).start()
    deployment = service._deployment
    admission = Admission(4, retry_after=1.0)
    pool = WorkerPool(1, admission, Reports(), name="test")
    admission.acquire()
    pool.stop(timeout=5)
    waiter = Waiter()
    pool.put(Job(deployment, 1, None, waiter))
    assert waiter.wait(timeout=5)
    assert isinstance(waiter.value, md.NotReadyError)
    assert admission.count == 0
    service.close()


def test_acquire_gives_its_token_back_when_close_began_meanwhile():
    """The re-check after taking a token: close() began between the check and the pop."""
    import collections

    admission = Admission(2, retry_after=1.0)

    class ClosingDuringPop(collections.deque):  # type: ignore[type-arg]
        def pop(self):
            token = super().pop()
            admission.open = False  # close() starts right after this pop
            return token

    admission._free = ClosingDuringPop(admission._free)
    with pytest.raises(md.NotReadyError):
        admission.acquire()
    assert admission.count == 0  # the token went back
