"""Fan one stream of events out to several monitors, isolating the ones that raise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from modeldeploy.errors import ModelDeployError
from modeldeploy.events import RequestFinished, RequestStarted
from modeldeploy.interfaces import RequestRecorder

if TYPE_CHECKING:
    from modeldeploy.events import BatchExecuted, ModelLoaded, Predictions, StageTimings

__all__ = ["CompositeMonitor", "MonitorFailed", "RequestObserver"]

_EVENT_HOOKS = (
    "on_request_start",
    "on_request_end",
    "on_batch",
    "on_model_loaded",
    "on_predictions",
)
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_HOOKS = (*_EVENT_HOOKS, "request_recorder", "on_monitor_error")


@attrs.frozen
class MonitorFailed:
    """A monitor raised from one of its hooks; the composite caught it.

    Attributes:
        monitor: The class name of the monitor that raised (a bounded label).
        hook: The hook that raised (``"on_request_end"``).
        error: The exception.

    .. versionadded:: 0.1.0
    """

    monitor: str
    hook: str
    error: BaseException


_Hook = tuple[str, Callable[[Any], object]]


class CompositeMonitor:
    """Dispatches every event to each monitor that implements the hook for it.

    A monitor may implement any subset of the hooks. Which monitor has which
    hook is resolved once, here, so dispatching costs one loop over the
    bound methods of that hook.

    A monitor that raises an ``Exception`` never affects the caller or the
    other monitors: the exception is counted per monitor class name
    (:attr:`errors`), logged at error level with its traceback (the first
    failure of each monitor at once, then at most one line per
    ``log_interval`` seconds carrying the number suppressed meanwhile), and
    passed as a :class:`MonitorFailed` to every monitor with an
    ``on_monitor_error`` hook, such as
    :class:`~modeldeploy.monitors.PrometheusMonitor`, which counts it in
    ``modeldeploy_monitor_errors_total``. ``BaseException`` that is not an
    ``Exception`` (``KeyboardInterrupt``) propagates.

    Args:
        monitors: The monitors, called in this order.
        logger: A structlog bound logger for the failure lines; by default
            ``structlog.get_logger("modeldeploy")``, resolved at first use
            and configured by the application.
        log_interval: Minimum seconds between two failure lines of one monitor.
        clock: Monotonic time source for the rate limit (tests inject one).

    Raises:
        TypeError: A monitor implements none of the hooks, or a hook is not
            callable: it would silently observe nothing.

    Attributes:
        monitors: The monitors, in call order.
        observes_predictions: Whether some monitor has ``on_predictions``: a
            service builds :class:`~modeldeploy.events.Predictions` events
            only when it is true, so models nobody watches pay nothing.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        monitors: Iterable[object],
        *,
        logger: Any = None,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monitors = tuple(monitors)
        found: dict[str, list[_Hook]] = {name: [] for name in _HOOKS}
        for monitor in self.monitors:
            label = type(monitor).__name__
            implements_any = False
            for name in _HOOKS:
                method = getattr(monitor, name, None)
                if method is None:
                    continue
                if not callable(method):
                    raise TypeError(f"{label}.{name} is not callable")
                found[name].append((label, method))
                implements_any = implements_any or name != "on_monitor_error"
            if not implements_any:
                raise TypeError(
                    f"{label} implements no monitor hook (expected one of {', '.join(_HOOKS)})"
                )
        self._request_start = tuple(found["on_request_start"])
        self._request_end = tuple(found["on_request_end"])
        self._batch = tuple(found["on_batch"])
        self._model_loaded = tuple(found["on_model_loaded"])
        self._predictions = tuple(found["on_predictions"])
        self.observes_predictions = bool(self._predictions)
        self._monitor_error = tuple(found["on_monitor_error"])

        self._logger = logger
        self._log_interval = log_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    @property
    def errors(self) -> Mapping[str, int]:
        """Exceptions caught so far, by monitor class name (a snapshot).

        .. versionadded:: 0.1.0
        """
        with self._lock:
            return dict(self._errors)

    def observe_requests(self, model: str, version: str) -> RequestObserver | None:
        """Resolve, once per model version, how its requests are observed.

        A monitor with a ``request_recorder`` hook is asked for its recorder
        now and gets no request events; every other monitor gets them as
        before. A ``request_recorder`` that raises is isolated like a hook, and
        that monitor falls back to its event hooks.

        Returns:
            The observer to call per request, or ``None`` when no monitor
            observes requests.

        .. versionadded:: 0.1.0
        """
        recorders: list[tuple[str, RequestRecorder]] = []
        starts: list[_Hook] = []
        ends: list[_Hook] = []
        for monitor in self.monitors:
            label = type(monitor).__name__
            make = getattr(monitor, "request_recorder", None)
            if make is not None:
                try:
                    recorder = make(model, version)
                    if not isinstance(recorder, RequestRecorder):
                        raise TypeError(
                            f"{label}.request_recorder returned {type(recorder).__name__}, "
                            "not a RequestRecorder"
                        )
                    recorders.append((label, recorder))
                    continue
                except Exception as exc:
                    self._failed(label, "request_recorder", exc)
            for hook, found in (("on_request_start", starts), ("on_request_end", ends)):
                method = getattr(monitor, hook, None)
                if method is not None:
                    found.append((label, method))
        if not (recorders or starts or ends):
            return None
        if len(recorders) == 1 and not (starts or ends):
            label, recorder = recorders[0]
            return _OneRecorder(self, model, version, label, recorder)
        return RequestObserver(self, model, version, tuple(recorders), tuple(starts), tuple(ends))

    # the hooks below repeat one loop, not a shared helper: that cost +25 ns (+27%) a dispatch
    def on_request_start(self, event: RequestStarted, /) -> None:
        """Pass the event to every monitor's ``on_request_start``.

        .. versionadded:: 0.1.0
        """
        for label, hook in self._request_start:
            try:
                hook(event)
            except Exception as exc:  # noqa: PERF203 - free in 3.11 until raised; isolation is the point
                self._failed(label, "on_request_start", exc)

    def on_request_end(self, event: RequestFinished, /) -> None:
        """Pass the event to every monitor's ``on_request_end``.

        .. versionadded:: 0.1.0
        """
        for label, hook in self._request_end:
            try:
                hook(event)
            except Exception as exc:  # noqa: PERF203
                self._failed(label, "on_request_end", exc)

    def on_batch(self, event: BatchExecuted, /) -> None:
        """Pass the event to every monitor's ``on_batch``.

        .. versionadded:: 0.1.0
        """
        for label, hook in self._batch:
            try:
                hook(event)
            except Exception as exc:  # noqa: PERF203
                self._failed(label, "on_batch", exc)

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        """Pass the event to every monitor's ``on_model_loaded``.

        .. versionadded:: 0.1.0
        """
        for label, hook in self._model_loaded:
            try:
                hook(event)
            except Exception as exc:  # noqa: PERF203
                self._failed(label, "on_model_loaded", exc)

    def on_predictions(self, event: Predictions, /) -> None:
        """Pass the event to every monitor's ``on_predictions``.

        Check :attr:`observes_predictions` first to skip building the event
        when no monitor listens.

        .. versionadded:: 0.1.0
        """
        for label, hook in self._predictions:
            try:
                hook(event)
            except Exception as exc:  # noqa: PERF203
                self._failed(label, "on_predictions", exc)

    def on_monitor_error(self, event: MonitorFailed, /) -> None:
        """Forward a failure an enclosing composite caught to every ``on_monitor_error``.

        .. versionadded:: 0.1.0
        """
        self._report(event)

    def _failed(self, label: str, hook: str, exc: Exception) -> None:
        self._count_and_log(label, hook, exc)
        self._report(MonitorFailed(monitor=label, hook=hook, error=exc))

    def _report(self, event: MonitorFailed) -> None:
        for label, on_error in self._monitor_error:
            try:
                on_error(event)
            except Exception as exc:  # noqa: PERF203
                # counted and logged, not reported again: that could loop
                self._count_and_log(label, "on_monitor_error", exc)

    def _count_and_log(self, label: str, hook: str, exc: Exception) -> None:
        with self._lock:
            self._errors[label] = self._errors.get(label, 0) + 1
            now = self._clock()
            last = self._last_logged.get(label)
            if last is not None and now - last < self._log_interval:
                self._suppressed[label] = self._suppressed.get(label, 0) + 1
                return
            self._last_logged[label] = now
            suppressed = self._suppressed.pop(label, 0)
        try:
            if self._logger is None:
                self._logger = structlog.get_logger("modeldeploy")
            self._logger.error(
                "monitor_failed", monitor=label, hook=hook, suppressed=suppressed, exc_info=exc
            )
        except Exception:  # noqa: S110 - a broken logger has nowhere safer to report
            pass


class RequestObserver:
    """How one model version's requests are observed.

    Built by :meth:`CompositeMonitor.observe_requests`.

    Recorders are called directly, with no event; the request events are
    built only when a monitor without a recorder listens. Every call is
    isolated as the composite isolates hooks.

    Attributes:
        model: The model name the requests are observed under.
        version: The model version.
        observes_events: Whether a monitor gets request events (and so reads
            their ``headers`` and ``timings``); when false, a service can
            skip gathering them.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_composite",
        "_ends",
        "_event_ends",
        "_event_starts",
        "_starts",
        "model",
        "observes_events",
        "version",
    )

    def __init__(
        self,
        composite: CompositeMonitor,
        model: str,
        version: str,
        recorders: tuple[tuple[str, RequestRecorder], ...],
        event_starts: tuple[_Hook, ...],
        event_ends: tuple[_Hook, ...],
    ) -> None:
        self._composite = composite
        self.model = model
        self.version = version
        self._starts = tuple((label, recorder.start) for label, recorder in recorders)
        self._ends = tuple((label, recorder.end) for label, recorder in recorders)
        self._event_starts = event_starts
        self._event_ends = event_ends
        self.observes_events = bool(event_starts or event_ends)

    def start(self, request_id: str, headers: Mapping[str, str] = _NO_HEADERS) -> None:
        """A request entered the service.

        Args:
            request_id: The request's id.
            headers: Its headers, names in lower case, passed on in
                :attr:`RequestStarted.headers <modeldeploy.events.RequestStarted.headers>`.

        .. versionadded:: 0.1.0
        """
        for label, start in self._starts:
            try:
                start()
            except Exception as exc:  # noqa: PERF203 - isolation is the point
                self._composite._failed(label, "request_recorder.start", exc)
        if self._event_starts:
            event = RequestStarted(self.model, self.version, request_id, headers)
            for label, hook in self._event_starts:
                try:
                    hook(event)
                except Exception as exc:  # noqa: PERF203
                    self._composite._failed(label, "on_request_start", exc)

    def end(
        self,
        request_id: str,
        latency_s: float,
        error: BaseException | None,
        timings: StageTimings | None = None,
    ) -> None:
        """A request left the service, answered or failed with *error*.

        Args:
            request_id: The request's id.
            latency_s: Seconds from its start.
            error: Why it failed; ``None`` when answered.
            timings: Where its time went, passed on in
                :attr:`RequestFinished.timings <modeldeploy.events.RequestFinished.timings>`.

        .. versionadded:: 0.1.0
        """
        if error is None:
            outcome = code = "ok"
        else:
            outcome = "error"
            code = error.code if isinstance(error, ModelDeployError) else "internal"
        for label, end in self._ends:
            try:
                end(code, latency_s)
            except Exception as exc:  # noqa: PERF203
                self._composite._failed(label, "request_recorder.end", exc)
        if self._event_ends:
            event = RequestFinished(
                self.model, self.version, request_id, outcome, code, latency_s, error, timings
            )
            for label, hook in self._event_ends:
                try:
                    hook(event)
                except Exception as exc:  # noqa: PERF203
                    self._composite._failed(label, "on_request_end", exc)


class _OneRecorder(RequestObserver):
    """The common case, one recorder and no event: no loop, no event."""

    __slots__ = ("_end", "_label", "_start")

    def __init__(
        self,
        composite: CompositeMonitor,
        model: str,
        version: str,
        label: str,
        recorder: RequestRecorder,
    ) -> None:
        super().__init__(composite, model, version, ((label, recorder),), (), ())
        self._label = label
        self._start = recorder.start
        self._end = recorder.end

    def start(self, request_id: str, headers: Mapping[str, str] = _NO_HEADERS) -> None:
        try:
            self._start()
        except Exception as exc:
            self._composite._failed(self._label, "request_recorder.start", exc)

    def end(
        self,
        request_id: str,
        latency_s: float,
        error: BaseException | None,
        timings: StageTimings | None = None,
    ) -> None:
        if error is None:
            code = "ok"
        else:
            code = error.code if isinstance(error, ModelDeployError) else "internal"
        try:
            self._end(code, latency_s)
        except Exception as exc:
            self._composite._failed(self._label, "request_recorder.end", exc)
