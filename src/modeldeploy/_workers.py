"""
The queue/worker stage: admission control, jobs, replicas and worker threads.

Private machinery behind :class:`modeldeploy.Service`. A job is admitted
(or refused at once with OverloadedError), queued, picked up by a worker
thread (or run inline on the caller's thread), computed on a model replica,
and its future resolved. Nothing here encodes, decodes or validates.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeAlias

from .errors import (
    DeadlineExceededError,
    ModelDeployError,
    NotReadyError,
    OverloadedError,
    PredictionError,
    RequestCancelledError,
)
from .events import Predictions
from .interfaces import Predictor
from .serializers._base import numpy_or_none

logger = logging.getLogger("modeldeploy")

_monotonic = time.monotonic


class Admission:
    """
    Counts accepted, unfinished requests against a limit.

    The free places are tokens in a deque: ``pop`` and ``append`` are atomic,
    so admitting and releasing take no lock (0.44 -> 0.1 us for the pair,
    measured). Only ``close()`` and a release while closing take the
    Condition, to wait for and signal the last request.
    """

    def __init__(self, limit: int, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self._free: collections.deque[None] = collections.deque([None] * limit)
        self._idle = threading.Condition(threading.Lock())
        self.open = True

    @property
    def count(self) -> int:
        """Requests admitted and not yet released."""
        return self.limit - len(self._free)

    def acquire(self) -> None:
        """Admit one request, or raise OverloadedError / NotReadyError at once."""
        if self.open:
            try:
                self._free.pop()
            except IndexError:
                raise OverloadedError(
                    f"queue full ({self.limit} requests pending)", retry_after=self.retry_after
                ) from None
            # checked again after taking the place: close() may have looked at the
            # count between the first check and the pop, and must not miss this one
            if self.open:
                return
            self.release()
        raise NotReadyError("service is not accepting requests")

    def release(self) -> None:
        """Mark one admitted request finished."""
        self._free.append(None)
        if not self.open:
            with self._idle:
                self._idle.notify_all()

    def close(self, timeout: float | None) -> bool:
        """Stop admitting; wait until every admitted request finished. True if drained."""
        with self._idle:
            self.open = False
            return self._idle.wait_for(lambda: len(self._free) == self.limit, timeout)


class Waiter:
    """
    The answer slot of one blocking call: a lock the worker releases.

    Does the three things a worker asks of a ``Future`` at a fraction of the
    cost: no Condition, no callbacks, one C-level lock handed from the worker
    to the waiting caller (measured: 68k -> 101k requests/s through a batched
    do-nothing model with 128 callers).

    The waiters of one batch are woken in a chain (:func:`wake_chain`): the
    worker wakes the first, and each caller, once awake, wakes the next.
    """

    __slots__ = ("_done", "_then", "gone", "ok", "value", "woken")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.ok = False
        self.value: Any = None
        # [the next waiter] in a chain (wake_chain); whoever pops it wakes it (pop is atomic)
        self._then: list[Waiter] | None = None
        self.gone = False  # the caller stopped waiting: timed out or interrupted
        self.woken = False  # its chain reached it: the answer is set

    def set_running_or_notify_cancel(self) -> bool:
        """A blocking call cannot be cancelled: always run it."""
        return True

    def set_result(self, value: Any) -> None:
        """Hand *value* to the waiting caller."""
        self.ok, self.value = True, value
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        """Hand *error* to the waiting caller."""
        self.value = error
        self._done.release()

    def wait(self, timeout: float | None) -> bool:
        """Block until answered or *timeout* seconds pass; True when answered."""
        try:
            if timeout is None:
                answered = self._done.acquire()
            else:
                # a timeout past what the platform's lock accepts is as good as none
                answered = self._done.acquire(timeout=min(timeout, threading.TIMEOUT_MAX))
        except BaseException:  # interrupted (KeyboardInterrupt): the chain goes on
            if self._give_up():
                _wake_next(self._then)
            raise
        if answered or self._give_up():
            _wake_next(self._then)
            return True
        return False

    def _give_up(self) -> bool:
        """Stop waiting; True if the chain reached us meanwhile (then passing it on is ours)."""
        self.gone = True
        # the waker sets woken, releases, then reads gone: whichever of us reads
        # the other's flag set passes the chain on (both may: the pop decides)
        return self.woken


def _wake_next(then: list[Waiter] | None) -> None:
    """Wake the waiter *then* holds, and the one after it for each caller gone."""
    while then is not None:
        try:
            following = then.pop()
        except IndexError:  # passed on already
            return
        following.woken = True
        following._done.release()
        if not following.gone:
            return  # its caller passes the chain on when it wakes (or gives up)
        then = following._then


def wake_chain(waiters: list[Waiter]) -> None:
    """
    Wake the answered *waiters* of one batch, in order: each caller wakes the next.

    The worker makes one wake-up instead of one per caller and goes back to
    the model, and the callers do not all rush for the GIL at once (128
    caller threads: see docs/benchmarks.md, dynamic batching).
    """
    for waiter, following in itertools.pairwise(waiters):
        waiter._then = [following]
    _wake_next([waiters[0]])


class AsyncWaiter:
    """
    The answer slot of one asyncio call: an asyncio future set on its own loop.

    Workers hand the answers of a whole batch to each event loop in one
    ``call_soon_threadsafe`` (one wake-up of the loop, not one per request).
    """

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: Any = None) -> None:
        self.loop = loop
        # *future*: anything with a future's done, cancelled, set_result and
        # set_exception, called on *loop* (Service.handle_then's answer)
        self.future: asyncio.Future[Any] = loop.create_future() if future is None else future

    def set_running_or_notify_cancel(self) -> bool:
        """False when the caller stopped waiting (cancelled) before the job ran."""
        return not self.future.cancelled()

    def set_result(self, value: Any) -> None:
        """Hand *value* to the awaiting task, on its loop."""
        _deliver_to(self.loop, [(self.future, True, value)])

    def set_exception(self, error: BaseException) -> None:
        """Hand *error* to the awaiting task, on its loop."""
        _deliver_to(self.loop, [(self.future, False, error)])


_Delivery = tuple["asyncio.Future[Any]", bool, Any]


def _deliver_to(loop: asyncio.AbstractEventLoop, items: list[_Delivery]) -> None:
    try:
        loop.call_soon_threadsafe(_deliver, items)
    except RuntimeError:  # the loop closed: nobody is waiting any more
        logger.debug("event loop closed before %d answers could be delivered", len(items))


def _deliver(items: list[_Delivery]) -> None:
    for future, ok, value in items:
        if future.done():  # cancelled or timed out meanwhile
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


Answer: TypeAlias = "Future[Any] | Waiter | AsyncWaiter"
"""Where a job's result goes: a caller's Future, a blocking or an asyncio waiter."""


class Job:
    """One admitted request on its way through a worker."""

    __slots__ = ("compute_s", "deadline", "enqueued", "future", "item", "model", "ran", "tag")

    def __init__(
        self,
        model: Deployment,
        item: Any,
        deadline: float | None,
        future: Answer | None,
        tag: Any = None,
    ) -> None:
        self.model = model
        self.item = item
        self.deadline = deadline
        self.future = future
        self.tag = tag  # the caller's bookkeeping (request id and start time), opaque here
        self.enqueued = _monotonic()
        # set by a timed pool: perf_counter() when its batch began, and the batch's seconds
        self.ran = 0.0
        self.compute_s = 0.0


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
        self.shared = self.instances[0]  # the one every worker uses when not exclusive
        self._free: queue.Queue[Predictor] = queue.Queue()
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

    __slots__ = (
        "name",
        "on_predictions",
        "per_item",
        "replicas",
        "requests",
        "signature",
        "validate",
        "version",
    )

    def __init__(
        self,
        name: str,
        version: str,
        replicas: Replicas,
        validate: Callable[[Any], Any] | None,
        on_predictions: Callable[[Predictions], None] | None = None,
        requests: Any = None,
    ) -> None:
        self.name = name
        self.version = version
        self.replicas = replicas
        self.signature = replicas.instances[0].signature
        self.validate = validate
        # where the model's inputs and outputs go (drift); None when nobody watches
        self.on_predictions = on_predictions
        # how this version's requests are observed (a RequestObserver), or None
        self.requests = requests
        # a shared model that answers one item without a batch of one (a plain
        # function): call_one calls it directly
        # looked up on the class: a proxy's __getattr__ or a mock must not answer for it
        per_item = getattr(type(replicas.shared), "_per_item", None)
        self.per_item: Callable[[Any], Any] | None = (
            per_item(replicas.shared) if callable(per_item) and not replicas.exclusive else None
        )


BatchHook = Callable[[Deployment, int, float, float], None]
"""``(deployment, size, queue_wait_s, compute_s)``: one batch was computed."""
DoneHook = Callable[[Job, bool, Any], None]
"""``(job, ok, value_or_error)``: a job ended, before its caller is answered."""


class Reports:
    """
    Where a worker pool reports what it did: plain callables, ``None`` when nobody listens.

    The pool calls these and nothing else of its owner, so data flows one
    way: from the workers to the monitors.

    Attributes:
        batch: Called after each model call on a worker.
        done: Called for each job as it ends (computed, failed or cancelled).
        timed: Record on each job when its batch ran and for how long
            (``Job.ran``, ``Job.compute_s``), for monitors that want the stages.
    """

    __slots__ = ("batch", "done", "timed")

    def __init__(
        self, batch: BatchHook | None = None, done: DoneHook | None = None, *, timed: bool = False
    ) -> None:
        self.batch = batch
        self.done = done
        self.timed = timed


def execute(
    jobs: Sequence[Job],
    on_batch: BatchHook | None,
    batching: Batching | None = None,
    *,
    timed: bool = False,
) -> list[tuple[bool, Any]]:
    """
    Compute one batch of jobs on one deployment; never raises.

    Returns one ``(ok, value_or_error)`` per job, in order. Jobs whose deadline
    passed are not computed. A model exception becomes PredictionError with
    the cause chained; when a batch of several raises, it is retried in halves
    until the failing items are found, so the others still get their answers.
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
    deadlines = [d for d in (jobs[i].deadline for i in live) if d is not None]
    try:
        instance = model.replicas.acquire(min(deadlines) if deadlines else None)
    except ModelDeployError as exc:
        for index in live:
            results[index] = (False, exc)
        return results
    started = time.perf_counter()
    try:
        _compute(instance, model, jobs, live, results, batching)
    finally:
        model.replicas.release(instance)
    if on_batch is not None or timed:
        compute_s = time.perf_counter() - started
        if timed:
            for index in live:
                job = jobs[index]
                job.ran, job.compute_s = started, compute_s
        if on_batch is not None:
            on_batch(model, len(live), now - jobs[live[0]].enqueued, compute_s)
    return results


def _compute(
    instance: Predictor,
    model: Deployment,
    jobs: Sequence[Job],
    indices: list[int],
    results: list[tuple[bool, Any]],
    batching: Batching | None,
) -> None:
    items = [jobs[i].item for i in indices]
    try:
        if batching is None:
            outputs = instance.predict(items)
        else:
            batch, sizes = batching.collate(items)
            outputs = batching.split(instance.predict(batch), sizes)
        # checked for every path, a custom split too: a wrong count must fail the batch,
        # not escape from zip(strict=True) below and kill the worker thread
        if len(outputs) != len(items):
            raise _WrongLengthError(len(outputs), len(items))
    except Exception as exc:
        # isolate the failing items: retry each half (a wrong count fails them all)
        if len(indices) > 1 and not isinstance(exc, _WrongLengthError):
            middle = len(indices) // 2
            _compute(instance, model, jobs, indices[:middle], results, batching)
            _compute(instance, model, jobs, indices[middle:], results, batching)
            return
        error = _as_error(model, exc)
    else:
        for index, output in zip(indices, outputs, strict=True):
            results[index] = (True, output)
        if model.on_predictions is not None:
            model.on_predictions(Predictions(model.name, model.version, items, outputs))
        return
    for index in indices:
        results[index] = (False, error)


def _as_error(model: Deployment, exc: Exception) -> ModelDeployError:
    """The typed error a caller gets for what the model raised (logged once, here)."""
    if isinstance(exc, _WrongLengthError):
        error = PredictionError(str(exc))
    elif isinstance(exc, ModelDeployError):
        return exc
    else:
        error = PredictionError(f"model {model.name!r} failed: {type(exc).__name__}")
        logger.error("model %s version %s raised", model.name, model.version, exc_info=exc)
    error.__cause__ = exc
    return error


def execute_one(model: Deployment, item: Any, deadline: float | None) -> tuple[bool, Any]:
    """
    :func:`execute` for one job on the caller's thread: the inline hot path.

    No batch is observed: inline calls have no queue, and a batch of one
    says nothing the request metrics do not.
    """
    try:
        return True, call_one(model, item, deadline)
    except ModelDeployError as exc:
        return False, exc


def call_one(model: Deployment, item: Any, deadline: float | None) -> Any:
    """
    Predict one item on the caller's thread; raise the typed error a caller gets.

    Raises:
        DeadlineExceededError: *deadline* passed before the model was free.
        PredictionError: The model raised (chained) or answered with the
            wrong number of results.
    """
    if deadline is not None and _monotonic() > deadline:
        raise DeadlineExceededError("deadline passed before the model was free")
    per_item = model.per_item
    if per_item is not None:
        try:
            output = per_item(item)
        except ModelDeployError:
            raise
        except Exception as exc:
            raise _as_error(model, exc) from exc
        if model.on_predictions is not None:
            model.on_predictions(Predictions(model.name, model.version, [item], [output]))
        return output
    replicas = model.replicas
    exclusive = replicas.exclusive
    instance = replicas.acquire(deadline) if exclusive else replicas.shared
    try:
        items = [item]
        outputs = instance.predict(items)
        if len(outputs) != 1:
            raise _WrongLengthError(len(outputs), 1)
        if model.on_predictions is not None:
            model.on_predictions(Predictions(model.name, model.version, items, outputs))
        return outputs[0]
    except ModelDeployError:
        raise
    except Exception as exc:
        raise _as_error(model, exc) from exc
    finally:
        if exclusive:
            replicas.release(instance)


class _WrongLengthError(Exception):
    def __init__(self, got: int, expected: int) -> None:
        super().__init__(f"model returned {got} results for a batch of {expected}")


class Batching:
    """
    How a worker groups queued jobs into one model call.

    Args:
        max_batch_size: Most jobs in one call.
        max_batch_delay: Seconds a batch may wait for more jobs after its
            first job was queued.
        rows: ``False``: each job is one item; same-shape NumPy arrays are
            stacked into one array, anything else is passed as a list.
            ``True``: each job is an array of rows; they are concatenated
            and the outputs split back by row counts.
        collate: Custom ``items -> (batch, sizes)``; overrides the above.
        split: Custom ``(outputs, sizes) -> per-job outputs``.
    """

    def __init__(
        self,
        max_batch_size: int,
        max_batch_delay: float,
        *,
        rows: bool = False,
        collate: Callable[[list[Any]], tuple[Any, Any]] | None = None,
        split: Callable[[Any, Any], Sequence[Any]] | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_batch_delay = max_batch_delay
        self.rows = rows
        self._collate = collate
        self._split = split

    def collate(self, items: list[Any]) -> tuple[Any, Any]:
        """Turn the jobs' items into one model input; return it and what split needs."""
        if self._collate is not None:
            return self._collate(items)
        np = numpy_or_none()
        if self.rows:
            if np is None:  # pragma: no cover - rows mode is documented as NumPy only
                raise PredictionError("batching rows needs numpy")
            sizes = [len(item) for item in items]
            return np.concatenate(items), sizes
        first = items[0]
        if np is not None and isinstance(first, np.ndarray):
            shape, dtype = first.shape, first.dtype
            if all(
                isinstance(i, np.ndarray) and i.shape == shape and i.dtype == dtype for i in items
            ):
                return np.stack(items), len(items)
        return items, len(items)

    def split(self, outputs: Sequence[Any], sizes: Any) -> Sequence[Any]:
        """Give each job its share of the model's outputs; raise on a length mismatch."""
        if self._split is not None:
            return self._split(outputs, sizes)
        if isinstance(sizes, int):
            if len(outputs) != sizes:
                raise _WrongLengthError(len(outputs), sizes)
            return outputs
        if len(outputs) != sum(sizes):
            raise _WrongLengthError(len(outputs), sum(sizes))
        shares = []
        offset = 0
        for size in sizes:
            shares.append(outputs[offset : offset + size])
            offset += size
        return shares


def _by_model(jobs: list[Job]) -> list[list[Job]]:
    """Group *jobs* by the deployment that computes them, in order of first appearance."""
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        groups.setdefault(id(job.model), []).append(job)
    return list(groups.values())


class WorkerPool:
    """
    ``workers`` threads taking jobs from one unbounded queue (bounded by Admission).

    A plain ``queue.Queue`` of jobs and our own threads, rather than a
    ``ThreadPoolExecutor``: close() can fail what is still queued with a typed
    error, and a worker can take several jobs at once (dynamic batching).
    """

    _STOP = object()
    _WAKE = object()  # ends a collector's wait for more jobs (close() with partial batches)

    def __init__(
        self,
        workers: int,
        admission: Admission,
        reports: Reports,
        name: str,
        batching: Batching | None = None,
    ) -> None:
        self._batching = batching
        self._timed = reports.timed
        self._draining = False
        self._queue: queue.Queue[Any] = queue.Queue()
        # the jobs each event loop submitted in its current pass, queued when it ends
        self._staged: dict[asyncio.AbstractEventLoop, collections.deque[Job]] = {}
        # stop() drains the queue once: a put that lands later (a job admitted just
        # before close() timed out) must not stay in a queue nobody reads
        self._stopped = False
        self._admission = admission
        self._on_batch = reports.batch
        self._on_done = reports.done
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def depth(self) -> int:
        """Jobs waiting in the queue (approximate, for the queue-depth gauge)."""
        return self._queue.qsize() + sum(len(jobs) for jobs in list(self._staged.values()))

    def put(self, job: Job) -> None:
        """
        Queue an admitted job; once stopped, fail it with NotReadyError instead.

        With batching, an asyncio caller's job (put on its loop's thread) is
        staged: the jobs a loop submits in one pass of its loop reach the
        queue together when the pass ends. Taken as they came, while the loop
        was still decoding the rest, they made batches of a few requests,
        which cost the model up to 4x more per request than a full batch
        (MLP 512-2048-512 served over HTTP: docs/batching.md, where the time goes).
        """
        future = job.future
        if type(future) is AsyncWaiter and self._batching is not None:
            loop = future.loop
            staged = self._staged.get(loop)
            if staged is None:
                staged = self._staged[loop] = collections.deque()
                loop.call_soon(self._flush, loop, staged)
            staged.append(job)
            return
        self._queue.put(job)
        if self._stopped:
            # stop() set the flag before its drain, so a put it could have missed
            # sees it: drain again (each job is taken by one get_nowait only)
            self._fail_queued()

    def _flush(self, loop: asyncio.AbstractEventLoop, staged: collections.deque[Job]) -> None:
        """On *loop*, when its pass ends: queue what it staged, in one hold of the lock."""
        del self._staged[loop]  # on the loop's thread: no put of this loop runs meanwhile
        self._queue_staged(staged)
        if self._stopped:
            self._fail_queued()

    def _queue_staged(self, staged: collections.deque[Job]) -> None:
        jobs: list[Job] = []
        try:  # popleft is atomic: drain() may empty the same deque from its thread
            while True:
                jobs.append(staged.popleft())
        except IndexError:
            pass
        if jobs:
            queue_ = self._queue
            with queue_.not_empty:  # queue.Queue's Condition, lock and deque (public)
                queue_.queue.extend(jobs)
                queue_.not_empty.notify(len(jobs))

    def _unstage(self) -> None:
        """Queue every loop's staged jobs now, from any thread (a loop may be blocked)."""
        for staged in list(self._staged.values()):
            self._queue_staged(staged)

    def _fail_queued(self) -> None:
        """Fail every job still queued or staged with NotReadyError; leave the stop markers."""
        self._unstage()
        markers = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is self._STOP or job is self._WAKE:
                markers.append(job)
            elif self._runnable(job):
                self._finish(job, False, NotReadyError("service closed before the request ran"))
        for marker in markers:
            self._queue.put(marker)

    def _work(self) -> None:
        batching = self._batching
        if batching is None and self._on_batch is None and not self._timed:
            self._work_one_at_a_time()
            return
        taken: list[Job] = []  # jobs taken from the queue before the last answers went out
        while True:
            first = taken[0] if taken else self._next_job()
            if first is None:
                return
            jobs = [first] if batching is None else self._collect(first, batching, taken[1:])
            taken = []
            runnable = [job for job in jobs if self._runnable(job)]
            if not runnable:
                continue
            model = runnable[0].model
            # during a rollout one batch may hold two versions: each computes its own
            groups = [runnable] if all(j.model is model for j in runnable) else _by_model(runnable)
            for index, group in enumerate(groups):
                results = execute(group, self._on_batch, batching, timed=self._timed)
                if batching is not None and index == len(groups) - 1:
                    # take the next batch's queued jobs before answering this one: the
                    # callers the answers wake would hold the GIL the taking needs (with
                    # 128 threads, measured: see docs/benchmarks.md, dynamic batching)
                    taken = self._take_queued(batching.max_batch_size)
                self._finish_all(group, results)

    def _next_job(self) -> Job | None:
        """Wait for the next job; None when told to stop."""
        get = self._queue.get
        while True:
            job = get()
            if job is self._STOP:
                return None
            if job is not self._WAKE:
                return job  # type: ignore[no-any-return]

    def _runnable(self, job: Job) -> bool:
        """Whether *job* is to run: one its caller cancelled is released here, uncomputed."""
        future = job.future
        if future is not None and not future.set_running_or_notify_cancel():
            self._cancelled(job)
            return False
        return True

    def _work_one_at_a_time(self) -> None:
        """The worker loop without batching or batch observers: one job, one model call."""
        while (job := self._next_job()) is not None:
            if not self._runnable(job):
                continue
            deadline = job.deadline
            if deadline is not None and _monotonic() > deadline:
                self._finish(job, False, DeadlineExceededError("deadline passed while queued"))
                continue
            try:
                value = call_one(job.model, job.item, deadline)
            except ModelDeployError as exc:
                self._finish(job, False, exc)
            else:
                self._finish(job, True, value)

    def _finish_all(self, jobs: list[Job], results: list[tuple[bool, Any]]) -> None:
        """Answer every job of a batch; asyncio callers get one delivery per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Delivery]] = {}
        waiters: list[Waiter] = []
        try:
            for job, (ok, value) in zip(jobs, results, strict=True):
                future = job.future
                if type(future) is AsyncWaiter:
                    by_loop.setdefault(future.loop, []).append((future.future, ok, value))
                    self._finish(job, ok, value, deliver=False)
                elif type(future) is Waiter:
                    future.ok, future.value = ok, value
                    waiters.append(future)
                    self._finish(job, ok, value, deliver=False)
                else:
                    self._finish(job, ok, value)
        finally:  # what was answered is delivered, even if a report raised
            for loop, items in by_loop.items():
                _deliver_to(loop, items)
            if waiters:
                wake_chain(waiters)

    def _take_queued(self, most: int) -> list[Job]:
        """Take up to *most* queued jobs without waiting, in one hold of the queue's lock."""
        taken: list[Job] = []
        queue_ = self._queue
        with queue_.mutex:  # queue.Queue's lock and deque (public attributes)
            items = queue_.queue
            while items and len(taken) < most:
                item = items[0]
                if item is self._STOP:
                    break  # left queued for this or another worker's next turn
                items.popleft()
                if item is self._WAKE:
                    break
                taken.append(item)
        return taken

    def _collect(self, first: Job, batching: Batching, taken: Sequence[Job] = ()) -> list[Any]:
        """Take up to max_batch_size jobs, waiting at most max_batch_delay after the first."""
        jobs = [first, *taken]
        # wait no longer than the delay after the first was queued; a job whose deadline
        # falls inside that wait ends it at once (waiting until the deadline itself would
        # only drop the job we waited for), taking just what is already queued
        until = first.enqueued + batching.max_batch_delay
        for job in jobs:
            if job.deadline is not None and job.deadline < until:
                until = first.enqueued
        get = self._queue.get
        most = batching.max_batch_size
        while len(jobs) < most:
            remaining = 0.0 if self._draining else until - _monotonic()
            if remaining <= 0:
                # what is queued already, in one hold of the lock (not a get() per job)
                jobs += self._take_queued(most - len(jobs))
                break
            try:
                job = get(timeout=remaining)
            except queue.Empty:
                break
            if job is self._WAKE:
                break
            if job is self._STOP:
                self._queue.put(job)  # leave it for this or another worker's next turn
                break
            jobs.append(job)
            if job.deadline is not None and job.deadline < until:
                until = job.enqueued
        return jobs

    def _finish(self, job: Job, ok: bool, value: Any, *, deliver: bool = True) -> None:
        future = job.future
        try:
            if self._on_done is not None:
                self._on_done(job, ok, value)
        finally:
            self._admission.release()
            if deliver and future is not None:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _cancelled(self, job: Job) -> None:
        """Release a job its caller cancelled before it ran; it ends, uncomputed."""
        try:
            if self._on_done is not None:
                # an asyncio caller that timed out cancelled its future: it got a deadline error
                error: ModelDeployError = (
                    DeadlineExceededError("deadline passed while queued")
                    if job.deadline is not None and _monotonic() >= job.deadline
                    else RequestCancelledError("cancelled before it ran")
                )
                self._on_done(job, False, error)
        finally:
            self._admission.release()

    def drain(self) -> None:
        """Stop waiting to fill batches: what is queued runs now, in partial batches."""
        self._draining = True
        self._unstage()  # close() may block the loop that staged them
        for _ in self._threads:
            self._queue.put(self._WAKE)

    def stop(self, timeout: float | None) -> None:
        """Fail what is still queued with NotReadyError, stop and join the threads."""
        self._stopped = True
        self._fail_queued()
        for _ in self._threads:
            self._queue.put(self._STOP)
        deadline = None if timeout is None else _monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(deadline - _monotonic(), 0.0)
            thread.join(remaining)
