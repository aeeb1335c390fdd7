"""
The queue/worker stage: admission control, jobs, replicas and worker threads.

Private machinery behind :class:`modeldeploy.Service`. A job is admitted
(or refused at once with OverloadedError), queued, picked up by a worker
thread (or run inline on the caller's thread), computed on a model replica,
and its future resolved. Nothing here encodes, decodes or validates.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from .errors import (
    DeadlineExceededError,
    ModelDeployError,
    NotReadyError,
    OverloadedError,
    PredictionError,
)
from .interfaces import Predictor

logger = logging.getLogger("modeldeploy")

_monotonic = time.monotonic


class Admission:
    """
    Counts accepted, unfinished requests against a limit.

    One C-level lock guards a counter: cheaper than ``threading.Semaphore``
    (pure Python) and it lets ``close()`` wait for the count to reach zero.
    """

    def __init__(self, limit: int, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.count = 0
        self._idle = threading.Condition(threading.Lock())
        self.open = True

    def acquire(self) -> None:
        """Admit one request, or raise OverloadedError / NotReadyError at once."""
        with self._idle:
            if not self.open:
                raise NotReadyError("service is not accepting requests")
            if self.count >= self.limit:
                raise OverloadedError(
                    f"queue full ({self.limit} requests pending)", retry_after=self.retry_after
                )
            self.count += 1

    def release(self) -> None:
        """Mark one admitted request finished."""
        with self._idle:
            self.count -= 1
            if not self.open and self.count == 0:
                self._idle.notify_all()

    def close(self, timeout: float | None) -> bool:
        """Stop admitting; wait until every admitted request finished. True if drained."""
        with self._idle:
            self.open = False
            return self._idle.wait_for(lambda: self.count == 0, timeout)


class Job:
    """One admitted request on its way through a worker."""

    __slots__ = ("deadline", "enqueued", "future", "item", "model", "tag")

    def __init__(
        self,
        model: Deployment,
        item: Any,
        deadline: float | None,
        future: Future[Any] | None,
        tag: Any = None,
    ) -> None:
        self.model = model
        self.item = item
        self.deadline = deadline
        self.future = future
        self.tag = tag  # the caller's bookkeeping (request id and start time), opaque here
        self.enqueued = _monotonic()


class Replicas:
    """
    The model instances of one deployment.

    With ``exclusive=False`` one instance serves every worker at once (the
    model is thread-safe: NumPy, most native code). With ``exclusive=True``
    each instance is lent to one worker at a time.
    """

    def __init__(self, instances: Sequence[Predictor], exclusive: bool) -> None:
        self.instances = tuple(instances)
        self.exclusive = exclusive
        self._free: queue.SimpleQueue[Predictor] = queue.SimpleQueue()
        for instance in self.instances:
            self._free.put(instance)

    def acquire(self, deadline: float | None) -> Predictor:
        """Borrow an instance, waiting at most until *deadline*."""
        if not self.exclusive:
            return self.instances[0]
        timeout = None if deadline is None else max(deadline - _monotonic(), 0.0)
        try:
            return self._free.get(timeout=timeout)
        except queue.Empty:
            raise DeadlineExceededError("deadline passed waiting for a model replica") from None

    def release(self, instance: Predictor) -> None:
        """Return a borrowed instance."""
        if self.exclusive:
            self._free.put(instance)


class Deployment:
    """
    One loaded model version as the service runs it.

    The service resolves every request through a single reference to a
    Deployment, so a hot swap is one assignment.
    """

    __slots__ = ("name", "replicas", "signature", "validate", "version")

    def __init__(
        self,
        name: str,
        version: str,
        replicas: Replicas,
        validate: Callable[[Any], Any] | None,
    ) -> None:
        self.name = name
        self.version = version
        self.replicas = replicas
        self.signature = replicas.instances[0].signature
        self.validate = validate


BatchHook = Callable[[Deployment, int, float, float], None]


def execute(jobs: Sequence[Job], on_batch: BatchHook | None) -> list[tuple[bool, Any]]:
    """
    Compute one batch of jobs on one deployment; never raises.

    Returns one ``(ok, value_or_error)`` per job, in order. Jobs whose deadline
    passed are not computed. A model exception becomes PredictionError with
    the cause chained; a result of the wrong length fails the whole batch.
    """
    now = _monotonic()
    results: list[tuple[bool, Any]] = [(False, None)] * len(jobs)
    live: list[int] = []
    for index, job in enumerate(jobs):
        if job.deadline is not None and now > job.deadline:
            results[index] = (False, DeadlineExceededError("deadline passed while queued"))
        else:
            live.append(index)
    if not live:
        return results
    model = jobs[live[0]].model
    try:
        instance = model.replicas.acquire(jobs[live[0]].deadline)
    except ModelDeployError as exc:
        for index in live:
            results[index] = (False, exc)
        return results
    started = time.perf_counter()
    try:
        outputs = instance.predict([jobs[i].item for i in live])
        if len(outputs) != len(live):
            raise PredictionError(
                f"model returned {len(outputs)} results for a batch of {len(live)}"
            )
    except ModelDeployError as exc:
        error: ModelDeployError | None = exc
    except Exception as exc:
        error = PredictionError(f"model {model.name!r} failed: {type(exc).__name__}")
        error.__cause__ = exc
        logger.error("model %s version %s raised", model.name, model.version, exc_info=exc)
    else:
        error = None
    finally:
        model.replicas.release(instance)
    compute_s = time.perf_counter() - started
    if error is not None:
        for index in live:
            results[index] = (False, error)
    else:
        for index, output in zip(live, outputs, strict=True):
            results[index] = (True, output)
    if on_batch is not None:
        on_batch(model, len(live), now - jobs[live[0]].enqueued, compute_s)
    return results


class WorkerPool:
    """
    ``workers`` threads taking jobs from one unbounded queue (bounded by Admission).

    A plain ``SimpleQueue`` of jobs and our own threads, rather than a
    ``ThreadPoolExecutor``: close() can fail what is still queued with a typed
    error, and a worker can take several jobs at once (dynamic batching).
    """

    _STOP = object()

    def __init__(
        self,
        workers: int,
        admission: Admission,
        on_batch: BatchHook | None,
        on_done: Callable[[Job, bool, Any], None] | None,
        name: str,
    ) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._admission = admission
        self._on_batch = on_batch
        self._on_done = on_done
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def depth(self) -> int:
        """Jobs waiting in the queue (approximate, for the queue-depth gauge)."""
        return self._queue.qsize()

    def put(self, job: Job) -> None:
        """Queue an admitted job."""
        self._queue.put(job)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is self._STOP:
                return
            future = job.future
            if future is not None and not future.set_running_or_notify_cancel():
                self._admission.release()  # cancelled by its caller before it ran
                continue
            ((ok, value),) = execute((job,), self._on_batch)
            self._finish(job, ok, value)

    def _finish(self, job: Job, ok: bool, value: Any) -> None:
        future = job.future
        try:
            if self._on_done is not None:
                self._on_done(job, ok, value)
        finally:
            self._admission.release()
            if future is not None:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def stop(self, timeout: float | None) -> None:
        """Fail what is still queued with NotReadyError, stop and join the threads."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is self._STOP:
                continue
            if job.future is not None and not job.future.set_running_or_notify_cancel():
                self._admission.release()
                continue
            self._finish(job, False, NotReadyError("service closed before the request ran"))
        for _ in self._threads:
            self._queue.put(self._STOP)
        deadline = None if timeout is None else _monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(deadline - _monotonic(), 0.0)
            thread.join(remaining)
