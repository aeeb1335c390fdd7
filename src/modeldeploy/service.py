"""
The Service: wires decode, validate, queue, predict, encode and monitors.

It holds no stage logic of its own: serializers decode and encode, the
validator checks the signature, :mod:`modeldeploy._workers` queues and
computes, monitors observe.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from types import MappingProxyType, TracebackType
from typing import Any, Final

from ._rollout import Shadow, Split, chain
from ._workers import (
    Admission,
    Answer,
    AsyncWaiter,
    Batching,
    Deployment,
    Job,
    Replicas,
    Reports,
    Waiter,
    WorkerPool,
    call_one,
    execute_one,
)
from .codecs import Codec, PredictCodec
from .errors import (
    DeadlineExceededError,
    ModelDeployError,
    ModelLoadError,
    NotReadyError,
    PayloadTooLargeError,
    PredictionError,
    RequestCancelledError,
    RequestError,
    VersionNotFoundError,
)
from .events import BatchExecuted, ModelLoaded, StageTimings
from .interfaces import Predictor, Serializer
from .messages import Request, Response, Signature
from .monitors.composite import CompositeMonitor, RequestObserver
from .predictors import predictor as make_predictor
from .predictors._coroutines import is_async
from .serializers._base import DEFAULT_MAX_SIZE
from .validation import compile_validator

__all__ = ["MAX_QUEUE", "TIMEOUT_HEADER", "Service", "State"]

logger = logging.getLogger("modeldeploy")

MAX_QUEUE = 10_000_000
"""
Largest ``max_queue``: a queue longer than this never drains within any
sensible deadline, and its free places are kept as tokens.

.. versionadded:: 0.1.0
"""

TIMEOUT_HEADER: Final = "x-request-timeout"
"""
Request header giving the seconds a request may take (``0.25``); the service's
``timeout`` applies without it, and caps it.

.. versionadded:: 0.1.0
"""

_monotonic = time.monotonic
_perf_counter = time.perf_counter


class State(enum.Enum):
    """
    Where a service is in its life.

    .. versionadded:: 0.1.0
    """

    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    CLOSING = "closing"
    CLOSED = "closed"


_READY = State.READY
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


class Service:
    """
    A model served with bounded concurrency, deadlines, typed errors and monitors.

    Args:
        model: A :class:`~modeldeploy.Predictor`, or anything
            :func:`modeldeploy.predictor` accepts (a function, a
            scikit-learn-style object).
        name: Model name for metrics, logs and routes. Defaults to the
            predictor's ``name`` attribute, else ``"model"``.
        version: Model version. Defaults to the predictor's ``version``, else ``"1"``.
        serializers: Formats :meth:`handle` reads and writes, in preference
            order. Defaults to JSON and msgpack.
        monitors: Observers of requests, batches and loads.
        workers: Worker threads. ``0`` runs each prediction inline on the
            caller's thread (for servers that give each request a thread).
        replicas: ``None`` shares one model instance among all workers (a
            thread-safe model). ``N`` keeps N instances, copies of *model* made
            before ``load()``, each used by one worker at a time.
        max_queue: Requests accepted and not yet answered (queued or computing);
            one more fails at once with OverloadedError. At most
            :data:`MAX_QUEUE`; each place costs 8 bytes.
        timeout: Seconds a request may take end to end, at most: a caller's
            ``timeout=`` or a request's ``deadline`` may shorten it, never extend
            it. ``None`` for no limit. A request still queued at its deadline is
            never computed.
        max_body_size: Bytes :meth:`handle` accepts in a body.
        warmup: An input predicted once on each replica by :meth:`start`.
        retry_after: Seconds suggested to a client refused with OverloadedError.
        max_batch_size: Most queued requests one model call computes together
            (dynamic batching; needs ``workers >= 1`` and a batched predictor
            to pay off). ``1`` turns batching off.
        max_batch_delay: Seconds a batch may wait for more requests after its
            first one was queued; never past the earliest deadline in it.
        batch_rows: Each request is an array of rows (not one item): requests
            are concatenated along the first axis and outputs split back.
        collate: Custom ``items -> (batch, sizes)`` for batching.
        split: Custom ``(outputs, sizes) -> one output per request``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        model: Predictor | Callable[..., Any] | Any,
        *,
        name: str | None = None,
        version: str | None = None,
        serializers: Sequence[Serializer] | None = None,
        monitors: Sequence[object] = (),
        workers: int = 4,
        replicas: int | None = None,
        max_queue: int = 1024,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_SIZE,
        warmup: Any = None,
        retry_after: float = 1.0,
        max_batch_size: int = 1,
        max_batch_delay: float = 0.0,
        batch_rows: bool = False,
        collate: Callable[[list[Any]], tuple[Any, Any]] | None = None,
        split: Callable[[Any, Any], Sequence[Any]] | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if replicas is not None and replicas < 1:
            raise ValueError(f"replicas must be >= 1 or None, got {replicas}")
        if not 1 <= max_queue <= MAX_QUEUE:
            raise ValueError(f"max_queue must be in 1..{MAX_QUEUE:_}, got {max_queue}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_batch_delay < 0:
            raise ValueError(f"max_batch_delay must be >= 0, got {max_batch_delay}")
        batching_asked = max_batch_size > 1 or batch_rows or collate is not None
        if batching_asked and workers == 0:
            raise ValueError("dynamic batching needs workers >= 1: inline calls have no queue")
        self._batching = (
            Batching(
                max_batch_size, max_batch_delay, rows=batch_rows, collate=collate, split=split
            )
            if batching_asked
            else None
        )
        self._predictor: Predictor = _as_predictor(model)
        self.name: str = name or getattr(self._predictor, "name", None) or "model"
        self._first_version = version or str(getattr(self._predictor, "version", None) or "1")
        if serializers is None:
            from .serializers import get

            serializers = [get("json"), get("msgpack")]
        self._codec = PredictCodec(serializers)
        self.negotiator = self._codec.negotiator
        self.workers = workers
        self.replicas = replicas
        self.timeout = timeout
        self.max_body_size = max_body_size
        self.warmup = warmup
        self._admission = Admission(max_queue, retry_after)
        self._monitor = CompositeMonitor(list(monitors))
        # resolved once per model version; None when no monitor observes requests
        self._requests = self._monitor.observe_requests(self.name, self._first_version)
        # stage timings cost a few clock reads: taken only for monitors that read events
        self._timed = self._requests is not None and self._requests.observes_events
        self._monitors = tuple(monitors)
        # the rollout: every loaded version by name, the one before the live one, a
        # canary's split and a shadow; changed under _rollout_lock, read without it
        self._versions: dict[str, Deployment] = {}
        self._previous: Deployment | None = None
        self._split: Split | None = None
        self._shadow: Shadow | None = None
        self._rollout_lock = threading.Lock()
        self._state = State.NEW
        self._state_lock = threading.Lock()
        self._deployment: Deployment | None = None
        self._pool: WorkerPool | None = None
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex() + "-"

    # -- life cycle -------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def version(self) -> str:
        """The live version: the one that answers requests that name none."""
        deployment = self._deployment
        return deployment.version if deployment is not None else self._first_version

    @property
    def versions(self) -> tuple[str, ...]:
        """
        Every loaded version, live first: a request may name any of them.

        .. versionadded:: 0.1.0
        """
        live = self.version
        loaded = tuple(self._versions)  # one C-level copy: a rollout may change the dict
        return (live, *(v for v in loaded if v != live))

    @property
    def signature(self) -> Signature | None:
        """The live version's declared signature, if any."""
        deployment = self._deployment
        return deployment.signature if deployment is not None else self._predictor.signature

    def health(self) -> bool:
        """Liveness: False only once the service failed to load or was closed."""
        return self._state not in (State.FAILED, State.CLOSED)

    def ready(self) -> bool:
        """Readiness: True only between a successful :meth:`start` and :meth:`close`."""
        return self._state is State.READY

    def start(self) -> Service:
        """
        Load the model (every replica), warm it up, start the workers.

        Returns the service, so ``service = Service(...).start()`` reads well.

        Raises:
            ModelLoadError: Loading or warm-up raised; the cause is chained and
                the service stays not ready.
            NotReadyError: The service was already started or closed.
        """
        with self._state_lock:
            if self._state is not State.NEW:
                raise NotReadyError(f"service is {self._state.value}, it can start only once")
            self._state = State.STARTING
        started = _perf_counter()
        try:
            deployment = self._load(
                self._predictor, self._first_version, self._requests, self.warmup
            )
        except BaseException:
            self._state = State.FAILED
            raise
        load_s = _perf_counter() - started
        self._deployment = deployment
        self._versions[deployment.version] = deployment
        if self.workers:
            self._pool = WorkerPool(
                self.workers,
                self._admission,
                _reports(self._monitor, self._requests, timed=self._timed),
                name=f"modeldeploy-{self.name}",
                batching=self._batching,
            )
        for monitor in self._monitors:
            track = getattr(monitor, "track_queue", None)
            if callable(track):
                track(self.name, self.queue_depth)
        self._monitor.on_model_loaded(ModelLoaded(self.name, deployment.version, load_s))
        logger.info("model %s version %s ready in %.3fs", self.name, deployment.version, load_s)
        self._state = State.READY
        return self

    def _load(
        self, predictor: Predictor, version: str, requests: RequestObserver | None, warmup: Any
    ) -> Deployment:
        count = self.replicas or 1
        # copies are made before load(): an unloaded predictor is configuration
        instances = [predictor] + [copy.deepcopy(predictor) for _ in range(count - 1)]
        try:
            for instance in instances:
                instance.load()
                if warmup is not None:
                    instance.predict([warmup])
        except ModelDeployError:
            raise
        except Exception as exc:
            # a rollout names the version that failed; the first load has only one
            which = f" version {version!r}" if self._deployment is not None else ""
            raise ModelLoadError(
                f"model {self.name!r}{which} failed to load: {type(exc).__name__}"
            ) from exc
        signature = instances[0].signature
        validate = compile_validator(signature) if signature is not None else None
        monitor = self._monitor
        return Deployment(
            self.name,
            version,
            Replicas(instances, self.replicas is not None),
            validate,
            monitor.on_predictions if monitor.observes_predictions else None,
            requests,
        )

    def close(self, timeout: float | None = None) -> bool:
        """
        Stop intake, finish every accepted request, release the workers.

        Args:
            timeout: Seconds to wait for accepted requests; ``None`` waits
                for all of them.

        Returns:
            True when every accepted request finished; False when *timeout*
            passed first (those still queued then fail with NotReadyError).
        """
        with self._state_lock:
            if self._state in (State.CLOSING, State.CLOSED):
                return True
            self._state = State.CLOSING
        started = _monotonic()
        if self._pool is not None:
            self._pool.drain()
        drained = self._admission.close(timeout)
        if self._pool is not None:
            remaining = None if timeout is None else max(timeout - (_monotonic() - started), 0)
            self._pool.stop(remaining)
        if not drained:
            logger.error("model %s closed with requests still running", self.name)
        with self._rollout_lock:
            self._stop_shadow()
        self._state = State.CLOSED
        return drained

    def __enter__(self) -> Service:
        if self._state is State.NEW:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def queue_depth(self) -> int:
        """Requests accepted and not yet answered (queued or computing)."""
        return self._admission.count

    # -- rollout: versions in a running service -------------------------------------------

    def deploy(
        self,
        model: Predictor | Callable[..., Any] | Any,
        *,
        version: str | None = None,
        warmup: Any = None,
    ) -> str:
        """
        Load a new version beside the live one, then make it live with no failed request.

        The new version loads and warms up (every replica) while the live one
        keeps answering; the switch is one reference assignment, so every
        request is answered by one version or the other, whole. Requests the
        old version already accepted finish on it; it stays loaded as the
        version :meth:`rollback` returns to (the one before it is released).

        Args:
            model: A :class:`~modeldeploy.Predictor` (a model store's
                :meth:`~modeldeploy.ModelStore.load` gives one) or anything
                :func:`modeldeploy.predictor` accepts.
            version: The new version's name; by default the predictor's
                ``version`` attribute. It must differ from every loaded version.
            warmup: An input predicted once on each replica before the
                switch; the service's ``warmup`` when ``None``.

        Returns:
            The version now live.

        Raises:
            ModelLoadError: Loading or warming up failed: the live version
                keeps serving, nothing changed.
            NotReadyError: The service is not running.
            ValueError: No version name, or one already loaded.

        .. versionadded:: 0.1.0
        """
        with self._rollout_lock:
            new = self._load_version(model, version, warmup)
            self._switch(new)
            return new.version

    def rollback(self) -> str:
        """
        Make the version before the live one live again, as :meth:`deploy` does.

        Returns:
            The version now live.

        Raises:
            NotReadyError: The service is not running, or there is no previous
                version to return to.

        .. versionadded:: 0.1.0
        """
        with self._rollout_lock:
            self._running()
            previous = self._previous
            if previous is None:
                raise NotReadyError(f"model {self.name!r} has no previous version to roll back to")
            self._switch(previous)
            return previous.version

    def canary(
        self,
        model: Predictor | Callable[..., Any] | Any | None,
        *,
        weight: float = 0.05,
        key: str | None = None,
        version: str | None = None,
        warmup: Any = None,
    ) -> str:
        """
        Load a new version and send it a weighted share of the requests.

        Args:
            model: What :meth:`deploy` takes; or ``None`` with ``version`` naming
                the previous version, which is loaded already.
            weight: Share of the requests the canary answers, in [0, 1].
            key: A request header (``"x-user-id"``) whose value picks the
                side, so one client always meets the same version; ``None``
                draws each request at random. In-process calls (``predict``)
                have no headers and are drawn at random.
            version: As for :meth:`deploy`.
            warmup: As for :meth:`deploy`.

        Returns:
            The canary's version. :meth:`promote` makes it live;
            :meth:`end_canary` sends all traffic back to the live version.

        Raises:
            ModelLoadError: The canary failed to load: nothing changed.
            ValueError: A weight outside [0, 1], or a version already loaded.

        .. versionadded:: 0.1.0
        """
        with self._rollout_lock:
            previous = self._previous
            if model is None and previous is not None and version == previous.version:
                new = previous  # the version before the live one: loaded already
            elif model is None:
                raise ValueError("canary() needs a model, or the previous version's name")
            else:
                new = self._load_version(model, version, warmup)
            self._split = Split(new, weight, key)
            logger.info(
                "model %s: canary version %s takes %.1f%% of requests",
                self.name,
                new.version,
                weight * 100,
            )
            return new.version

    def promote(self) -> str:
        """
        Make the canary the live version (as :meth:`deploy` would) and end the split.

        Raises:
            NotReadyError: No canary is running.

        .. versionadded:: 0.1.0
        """
        with self._rollout_lock:
            split = self._split
            if split is None:
                raise NotReadyError(f"model {self.name!r} has no canary to promote")
            self._switch(split.canary)
            return split.canary.version

    def end_canary(self) -> None:
        """
        Send every request to the live version again and unload the canary.

        .. versionadded:: 0.1.0
        """
        with self._rollout_lock:
            split, self._split = self._split, None
            if split is not None and split.canary is not self._previous:
                self._versions.pop(split.canary.version, None)

    def shadow(
        self,
        model: Predictor | Callable[..., Any] | Any,
        *,
        version: str | None = None,
        warmup: Any = None,
        capacity: int = 1024,
    ) -> str:
        """
        Load a version that computes a copy of the live traffic, off the request's path.

        Every model call of the live version is offered to the shadow, which
        computes it on a thread of its own and compares the answers
        (:attr:`shadow_stats`); its answers are never returned and its
        failures never reach a client. When the shadow falls behind, copies
        are dropped and counted, never waited for.

        Args:
            model: What :meth:`deploy` takes.
            version: As for :meth:`deploy`.
            warmup: As for :meth:`deploy`.
            capacity: Model calls waiting for the shadow, at most.

        Returns:
            The shadow's version.

        .. versionadded:: 0.1.0
        """
        with self._rollout_lock:
            new = self._load_version(model, version, warmup)
            self._stop_shadow()
            shadow = self._shadow = Shadow(new, capacity)
            self._watch(self._deployment)
            return shadow.deployment.version

    def end_shadow(self) -> dict[str, float]:
        """
        Stop the shadow; return what it compared (as :attr:`shadow_stats`).

        .. versionadded:: 0.1.0
        """
        with self._rollout_lock:
            shadow = self._shadow
            self._stop_shadow()  # compares what is queued first
            return shadow.stats.snapshot() if shadow is not None else {}

    @property
    def shadow_stats(self) -> dict[str, float]:
        """
        What the shadow compared so far; empty without a shadow.

        Counts of model-call copies ``offered`` and ``dropped``, of items
        ``matched``, ``mismatched`` and ``failed``, and ``shadow_s``, the
        seconds the shadow computed.

        .. versionadded:: 0.1.0
        """
        shadow = self._shadow
        return shadow.stats.snapshot() if shadow is not None else {}

    def model_info(self) -> dict[str, Any]:
        """
        What is live: the model, the live, previous, canary and shadow versions.

        .. versionadded:: 0.1.0
        """
        split, shadow, previous = self._split, self._shadow, self._previous
        return {
            "name": self.name,
            "state": self._state.value,
            "live": self.version,
            "previous": previous.version if previous is not None else None,
            "canary": (
                {"version": split.canary.version, "weight": split.weight, "key": split.key}
                if split is not None
                else None
            ),
            "shadow": shadow.deployment.version if shadow is not None else None,
            "versions": list(self.versions),
        }

    def _running(self) -> Deployment:
        deployment = self._deployment
        if deployment is None or self._state is not State.READY:
            raise NotReadyError(f"model {self.name!r} is {self._state.value}")
        return deployment

    def _load_version(self, model: Any, version: str | None, warmup: Any) -> Deployment:
        """Load a new version beside the loaded ones (under the rollout lock)."""
        self._running()
        predictor = _as_predictor(model)
        version = version or getattr(predictor, "version", None)
        if not version:
            raise ValueError("name the new version: version=..., or a predictor's version")
        version = str(version)
        if version in self._versions:
            raise ValueError(f"model {self.name!r} already has version {version!r} loaded")
        started = _perf_counter()
        requests = self._monitor.observe_requests(self.name, version)
        new = self._load(predictor, version, requests, self.warmup if warmup is None else warmup)
        load_s = _perf_counter() - started
        self._versions[version] = new
        self._monitor.on_model_loaded(ModelLoaded(self.name, version, load_s))
        logger.info("model %s version %s loaded in %.3fs", self.name, version, load_s)
        return new

    def _switch(self, new: Deployment) -> None:
        """Make *new* live (one assignment); keep the old one for rollback."""
        old = self._running()
        if new is old:
            return
        split = self._split
        if split is not None and split.canary is not new and split.canary is not self._previous:
            self._versions.pop(split.canary.version, None)
        self._split = None
        released = self._previous
        if released is not None and released is not new:
            self._versions.pop(released.version, None)
        self._watch(new)
        self._deployment = new  # the switch: every request from now on
        self._previous = old
        self._unwatch(old)
        logger.info("model %s: version %s is live (was %s)", self.name, new.version, old.version)

    def _watch(self, deployment: Deployment | None) -> None:
        """Have the shadow, if any, see *deployment*'s model calls."""
        shadow = self._shadow
        if deployment is None or shadow is None or deployment is shadow.deployment:
            return
        monitor = self._monitor
        own = monitor.on_predictions if monitor.observes_predictions else None
        deployment.on_predictions = chain(own, shadow.offer)

    def _unwatch(self, deployment: Deployment) -> None:
        monitor = self._monitor
        deployment.on_predictions = (
            monitor.on_predictions if monitor.observes_predictions else None
        )

    def _stop_shadow(self) -> None:
        shadow, self._shadow = self._shadow, None
        if shadow is None:
            return
        live = self._deployment
        if live is not None:
            self._unwatch(live)
        shadow.stop()
        self._versions.pop(shadow.deployment.version, None)

    # -- calling the model --------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float | None:
        # a caller's timeout may shorten the service's, never extend it
        if self.timeout is not None and (timeout is None or timeout > self.timeout):
            timeout = self.timeout
        return None if timeout is None else _monotonic() + timeout

    def _active(self) -> Deployment:
        """The version an in-process call goes to: the live one, or a canary's draw."""
        deployment = self._running()
        split = self._split
        return deployment if split is None else split.pick(deployment, _NO_HEADERS)

    def _route(self, request: Request) -> Deployment | None:
        """The version that answers *request*: the one it names, or the split's pick."""
        live = self._deployment
        if live is None:
            return None
        if request.version is not None:
            deployment = self._versions.get(request.version)
            if deployment is None:
                raise VersionNotFoundError(
                    f"model {self.name!r} has no version {request.version!r} loaded"
                )
            return deployment
        split = self._split
        return live if split is None else split.pick(live, request.headers)

    def _validated(self, deployment: Deployment, x: Any) -> Any:
        return x if deployment.validate is None else deployment.validate(x)

    def submit(self, x: Any, *, timeout: float | None = None) -> Future[Any]:
        """
        Queue one input; return a :class:`concurrent.futures.Future` of its output.

        With ``workers=0`` the prediction runs now, on this thread, and the
        returned future is already done.

        Raises:
            ValidationError: *x* does not fit the signature.
            OverloadedError: The queue is full.
            NotReadyError: Not started, or closing.
        """
        future: Future[Any] = Future()
        job = self._admit(x, self._deadline(timeout), future)
        if self._pool is not None:
            self._pool.put(job)
        else:
            future.set_running_or_notify_cancel()
            ok, value = self._run_inline(job)
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        return future

    def predict(self, x: Any, *, timeout: float | None = None) -> Any:
        """
        Predict one input and wait for its output.

        Raises:
            ValidationError: *x* does not fit the signature.
            OverloadedError: The queue is full.
            DeadlineExceededError: The deadline passed first.
            PredictionError: The model raised; the cause is chained.
            NotReadyError: Not started, or closing.
        """
        deadline = self._deadline(timeout)
        if self._pool is None:
            ok, value = self._run_inline(self._admit(x, deadline, None))
            if ok:
                return value
            raise value
        waiter = Waiter()
        self._pool.put(self._admit(x, deadline, waiter))
        return _wait(waiter, deadline)

    async def apredict(self, x: Any, *, timeout: float | None = None) -> Any:
        """
        Predict one input without blocking the event loop.

        With ``workers=0`` the prediction runs in the loop's default executor.
        Raises what :meth:`predict` raises.
        """
        if self._pool is None:
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.predict(x, timeout=timeout)
            )
        deadline = self._deadline(timeout)
        waiter = AsyncWaiter(asyncio.get_running_loop())
        self._pool.put(self._admit(x, deadline, waiter))
        return await _await(waiter.future, deadline)

    def _admit(self, x: Any, deadline: float | None, future: Answer | None) -> Job:
        """Validate *x* and admit it as a job observed as one request."""
        if self._requests is None:
            deployment = self._active()
            x = self._validated(deployment, x)
            self._admission.acquire()
            return Job(deployment, x, deadline, future)
        request_id = self._new_id()
        started = _perf_counter()
        try:
            deployment = self._active()
        except NotReadyError as exc:
            requests = self._requests
            requests.start(request_id)
            requests.end(request_id, _perf_counter() - started, exc)
            raise
        requests = deployment.requests
        requests.start(request_id)
        try:  # a refused request is observed as handle observes it
            x = self._validated(deployment, x)
            self._admission.acquire()
        except Exception as exc:  # a validator may raise anything for a strange input
            requests.end(request_id, _perf_counter() - started, exc)
            raise
        return Job(deployment, x, deadline, future, (requests, request_id, started))

    def _run_inline(self, job: Job) -> tuple[bool, Any]:
        """Compute an admitted job on this thread; observe it if it is tagged."""
        try:
            ok, value = execute_one(job.model, job.item, job.deadline)
        finally:
            self._admission.release()
        if job.tag is not None:
            _end_job(job, ok, value)
        return ok, value

    # -- handle: the whole request flow ---------------------------------------------

    def handle(self, request: Request, codec: Codec | None = None) -> Response:
        """
        Decode, validate, predict and encode one request; never raises.

        This is the one path of every request, whatever its protocol: the size
        limit, readiness, deadline, request id, admission, monitors and error
        mapping are the same; only the *codec* differs.

        Args:
            request: The request.
            codec: How the request's protocol decodes, encodes and reports
                errors (:mod:`modeldeploy.codecs`); by default ``/predict``'s,
                the serializers chosen by ``Content-Type`` and ``Accept``.

        Returns:
            The response. Every :class:`~modeldeploy.ModelDeployError` becomes
            the codec's error response with the error's status (for
            ``/predict``, a JSON body ``{"error": {"code", "message"}}``); any
            other exception a 500 with no detail (it is logged).
        """
        if codec is None:
            codec = self._codec
        started = _perf_counter()
        headers = request.headers
        request_id = headers.get("x-request-id") or self._id_prefix + str(next(self._ids))
        deployment = self._deployment
        if self._split is not None or request.version is not None:
            try:
                deployment = self._route(request)
            except ModelDeployError as exc:  # a version not loaded: a routing answer
                return codec.error(exc, request_id)
        requests = self._requests if deployment is None else deployment.requests
        if requests is not None:
            if self._timed:
                return self._handle_timed(
                    request, codec, requests, started, request_id, deployment
                )
            requests.start(request_id, headers)
        try:
            deployment, x, reply, deadline = self._prepare(request, codec, deployment)
            # inline, as in _handle_timed: a shared helper cost +30 ns a request (2.05 us, timeit)
            admission = self._admission
            admission.acquire()
            if self._pool is None:
                try:
                    value = call_one(deployment, x, deadline)
                finally:
                    admission.release()
            else:
                waiter = Waiter()
                self._pool.put(Job(deployment, x, deadline, waiter))
                value = _wait(waiter, deadline)
            response = codec.encode(reply, value, request_id, deployment)
        except Exception as exc:
            return self._failed(requests, started, request_id, exc, codec)
        if requests is not None:
            requests.end(request_id, _perf_counter() - started, None)
        return response

    def _handle_timed(
        self,
        request: Request,
        codec: Codec,
        requests: RequestObserver,
        started: float,
        request_id: str,
        deployment: Deployment | None,
    ) -> Response:
        """:meth:`handle`'s path, with each stage's seconds for monitors that read events."""
        requests.start(request_id, request.headers)
        decoded = queued = computed = 0.0
        try:
            deployment, x, reply, deadline = self._prepare(request, codec, deployment)
            decoded = _perf_counter()
            admission = self._admission
            admission.acquire()
            if self._pool is None:
                try:
                    value = call_one(deployment, x, deadline)
                finally:
                    admission.release()
                queued = decoded
            else:
                job = Job(deployment, x, deadline, Waiter())
                self._pool.put(job)
                value = _wait(job.future, deadline)  # type: ignore[arg-type]
                queued = job.ran
            computed = _perf_counter()
            response = codec.encode(reply, value, request_id, deployment)
        except Exception as exc:
            timings = _timings(started, decoded, queued, computed, 0.0)
            return self._failed(requests, started, request_id, exc, codec, timings)
        ended = _perf_counter()
        timings = _timings(started, decoded, queued, computed, ended)
        requests.end(request_id, ended - started, None, timings)
        return response

    async def ahandle(self, request: Request, codec: Codec | None = None) -> Response:
        """
        :meth:`handle` for asyncio: the same flow, never blocking the event loop.

        The model's answer is awaited, not waited for; with ``workers=0`` the
        whole of :meth:`handle` runs in the loop's default executor.

        .. versionadded:: 0.1.0
        """
        loop = asyncio.get_running_loop()
        if self._pool is None:
            return await loop.run_in_executor(None, self.handle, request, codec)
        answered: asyncio.Future[Response] = loop.create_future()
        answer = self._handle_then(request, codec, answered.set_result)
        try:
            return await answered
        except asyncio.CancelledError:
            if answer is not None:  # the caller gave up: a job not started yet is skipped
                answer.cancel()
            raise

    def handle_then(
        self, request: Request, codec: Codec | None, done: Callable[[Response], None]
    ) -> None:
        """
        :meth:`handle` for a server driven by callbacks: *done* gets the response.

        Call it on an event loop's thread; the model runs on the service's
        worker threads (batched with other requests), and *done* is called once,
        on that loop's thread, with what :meth:`ahandle` would return: the same
        flow, with no task and no future. A request refused before it is queued
        (malformed, too large, not ready, queue full) is answered before this
        returns. Needs worker threads (``workers >= 1``).

        Args:
            request: The request.
            codec: The protocol's codec; ``None`` for ``/predict``'s.
            done: Called with the response; it must not raise.

        Raises:
            RuntimeError: The service has no worker threads, or no event loop runs.

        .. versionadded:: 0.1.0
        """
        if self._pool is None:
            raise RuntimeError(f"handle_then needs worker threads; {self.name!r} has workers=0")
        self._handle_then(request, codec, done)

    def _handle_then(
        self, request: Request, codec: Codec | None, done: Callable[[Response], None]
    ) -> _Answer | None:
        """:meth:`handle_then`; returns the answer owed, None when given already."""
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        if codec is None:
            codec = self._codec
        started = _perf_counter()
        request_id = request.headers.get("x-request-id") or self._new_id()
        deployment = self._deployment
        if self._split is not None or request.version is not None:
            try:
                deployment = self._route(request)
            except ModelDeployError as exc:
                done(codec.error(exc, request_id))
                return None
        requests = self._requests if deployment is None else deployment.requests
        if requests is not None:
            requests.start(request_id, request.headers)
        timed = self._timed
        decoded = 0.0
        try:
            deployment, x, reply, deadline = self._prepare(request, codec, deployment)
            if timed:
                decoded = _perf_counter()
            self._admission.acquire()
        except Exception as exc:
            timings = _timings(started, decoded, 0.0, 0.0, 0.0) if timed else None
            done(self._failed(requests, started, request_id, exc, codec, timings))
            return None
        answer = _Answer(self, codec, reply, request_id, deployment, requests, started, done)
        if deadline is not None:
            answer.timer = loop.call_later(max(deadline - _monotonic(), 0.0), answer.expire)
        job = Job(deployment, x, deadline, AsyncWaiter(loop, answer))
        if timed:
            answer.stages = (decoded, job)
        self._pool.put(job)
        return answer

    def _failed(
        self,
        requests: RequestObserver | None,
        started: float,
        request_id: str,
        exc: Exception,
        codec: Codec,
        timings: StageTimings | None = None,
    ) -> Response:
        """The error response for *exc*, observed; a bug becomes a bare, logged 500."""
        if isinstance(exc, ModelDeployError):
            error = exc
        else:
            logger.error("unexpected error handling request %s", request_id, exc_info=exc)
            error = PredictionError("internal error")
            error.__cause__ = exc
        if requests is not None:
            requests.end(request_id, _perf_counter() - started, error, timings)
        return codec.error(error, request_id)

    def _prepare(
        self, request: Request, codec: Codec, deployment: Deployment | None
    ) -> tuple[Deployment, Any, Any, float | None]:
        """Check, decode and validate a request: everything before the queue."""
        body = request.body
        size = body.nbytes if type(body) is memoryview else len(body)
        if size > self.max_body_size:
            raise PayloadTooLargeError(
                f"body of {size} bytes is over the limit of {self.max_body_size}"
            )
        if deployment is None or self._state is not _READY:
            raise NotReadyError(f"model {self.name!r} is {self._state.value}")
        deadline = request.deadline
        if deadline is None:
            timeout = request.headers.get(TIMEOUT_HEADER)
            if timeout is not None:
                deadline = _monotonic() + parse_timeout(timeout)
        if self.timeout is not None:  # a client's deadline may come sooner, never later
            latest = _monotonic() + self.timeout
            if deadline is None or deadline > latest:
                deadline = latest
        x, reply = codec.decode(request, deployment)
        return deployment, x, reply, deadline

    # -- monitors ---------------------------------------------------------------

    def _new_id(self) -> str:
        return self._id_prefix + str(next(self._ids))


def _reports(
    monitor: CompositeMonitor, requests: RequestObserver | None, *, timed: bool
) -> Reports:
    """What the worker pool reports, wired to the monitors (never to the service)."""
    batch = None
    if any(callable(getattr(m, "on_batch", None)) for m in monitor.monitors):

        def batch(model: Deployment, size: int, queue_wait_s: float, compute_s: float) -> None:
            monitor.on_batch(
                BatchExecuted(model.name, model.version, size, queue_wait_s, compute_s)
            )

    done = None
    if requests is not None:

        def done(job: Job, ok: bool, value: Any) -> None:
            if job.tag is not None:
                _end_job(job, ok, value)

    return Reports(batch, done, timed=timed)


def _end_job(job: Job, ok: bool, value: Any) -> None:
    """End the observation of a job :meth:`Service._admit` started (a tagged job)."""
    requests, request_id, started = job.tag
    requests.end(request_id, _perf_counter() - started, None if ok else value)


def _timings(
    started: float, decoded: float, queued: float, computed: float, ended: float
) -> StageTimings:
    """The stages between the clock readings of one request; 0.0 for a stage not reached."""
    return StageTimings(
        decoded - started if decoded else 0.0,
        queued - decoded if queued and decoded else 0.0,
        computed - queued if computed and queued else 0.0,
        ended - computed if ended and computed else 0.0,
    )


def _as_predictor(model: Any) -> Predictor:
    """*model* as a Predictor: as it is, unless it needs md.predictor (async predict)."""
    if isinstance(model, Predictor) and not is_async(model.predict):
        return model
    return make_predictor(model)


def parse_timeout(value: str) -> float:
    """
    Read a :data:`TIMEOUT_HEADER` value: positive, finite seconds.

    Raises:
        RequestError: Anything else.

    .. versionadded:: 0.1.0
    """
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise RequestError(f"{TIMEOUT_HEADER} must be a positive number of seconds")
    return seconds


def _wait(waiter: Waiter, deadline: float | None) -> Any:
    timeout = None if deadline is None else max(deadline - _monotonic(), 0.0)
    if not waiter.wait(timeout):
        raise DeadlineExceededError("deadline passed waiting for the model")
    if waiter.ok:
        return waiter.value
    raise waiter.value


class _Answer:
    """
    The answer :meth:`Service.handle_then` owes: its end of :meth:`Service.ahandle`'s flow.

    The worker pool delivers the model's result (or error) to it as to an
    asyncio future, on the caller's loop; it encodes, reports and calls
    ``done``. A deadline that passes first answers 504 and ignores the result.
    """

    __slots__ = (
        "_codec", "_deployment", "_done", "_finished", "_reply", "_request_id",
        "_requests", "_service", "_started", "stages", "timer",
    )  # fmt: skip

    def __init__(
        self,
        service: Service,
        codec: Codec,
        reply: Any,
        request_id: str,
        deployment: Deployment,
        requests: RequestObserver | None,
        started: float,
        done: Callable[[Response], None],
    ) -> None:
        self._service = service
        self._codec = codec
        self._reply = reply
        self._request_id = request_id
        self._deployment = deployment
        self._requests = requests
        self._started = started
        self._done = done
        self._finished = False
        self.timer: asyncio.TimerHandle | None = None
        # for monitors that read events: when decoding ended, and the job (Job.ran)
        self.stages: tuple[float, Job] | None = None

    # the future's interface the worker pool's delivery calls
    def done(self) -> bool:
        """Whether the answer was given (the deadline may have passed first)."""
        return self._finished

    def cancelled(self) -> bool:
        """True once the deadline passed: the pool then skips the job if not run yet."""
        return self._finished

    def set_result(self, value: Any) -> None:
        """Encode the model's output, report it and answer."""
        self._finish()
        requests = self._requests
        timed = self.stages is not None
        computed = _perf_counter() if timed else 0.0
        try:
            response = self._codec.encode(self._reply, value, self._request_id, self._deployment)
        except Exception as exc:
            response = self._service._failed(
                requests,
                self._started,
                self._request_id,
                exc,
                self._codec,
                self._timings(computed),
            )
        else:
            if requests is not None:
                ended = _perf_counter()
                timings = self._timings(computed, ended) if timed else None
                requests.end(self._request_id, ended - self._started, None, timings)
        self._answer(response)

    def set_exception(self, error: BaseException) -> None:
        """Answer with the model's error."""
        self._finish()
        exc = error if isinstance(error, Exception) else PredictionError(str(error))
        service, codec = self._service, self._codec
        timings = self._timings()
        self._answer(
            service._failed(self._requests, self._started, self._request_id, exc, codec, timings)
        )

    def expire(self) -> None:
        """The deadline passed before the model answered."""
        if self._finished:
            return
        self.timer = None
        self.set_exception(DeadlineExceededError("deadline passed waiting for the model"))

    def cancel(self) -> None:
        """The caller gave up: observed as cancelled, and no answer is given."""
        if self._finished:
            return
        self._finish()
        if self._requests is not None:
            error = RequestCancelledError("cancelled while waiting for the model")
            latency = _perf_counter() - self._started
            self._requests.end(self._request_id, latency, error, self._timings())

    def _timings(self, computed: float = 0.0, ended: float = 0.0) -> StageTimings | None:
        """The stages reached, as :meth:`Service.handle` measures them; None if not timed."""
        if self.stages is None:
            return None
        decoded, job = self.stages
        return _timings(self._started, decoded, job.ran, computed, ended)

    def _answer(self, response: Response) -> None:
        # the pool delivers a batch's answers in one loop callback: one caller's
        # failure must not keep the others from theirs
        try:
            self._done(response)
        except Exception:
            logger.exception("answering request %s failed", self._request_id)

    def _finish(self) -> None:
        self._finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


async def _await(future: asyncio.Future[Any], deadline: float | None) -> Any:
    if deadline is None:
        return await future
    try:
        return await asyncio.wait_for(future, max(deadline - _monotonic(), 0.0))
    except asyncio.TimeoutError:
        raise DeadlineExceededError("deadline passed waiting for the model") from None
