"""Structured log lines for requests and model loads, through structlog.

Importing this module configures nothing. The application decides where and
how lines are rendered, with its own ``structlog.configure(...)`` or with
:func:`configure_json_logging`.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from modeldeploy.errors import ModelDeployError

if TYPE_CHECKING:
    from modeldeploy.events import ModelLoaded, RequestFinished

__all__ = ["LogMonitor", "configure_json_logging"]


def configure_json_logging(
    stream: TextIO | None = None, *, level: int | str = logging.INFO
) -> None:
    """Configure structlog, process-wide, to write one JSON object per line.

    Each line carries ``event``, ``level``, an ISO-8601 UTC ``timestamp``,
    the bound context (``structlog.contextvars``) and the event's fields; an
    exception becomes a structured ``exception`` list (frames without their
    local variables, which may hold request data). Call it once at
    startup, and only if the application does not configure structlog itself:
    modeldeploy never calls it.

    Args:
        stream: Where lines go; standard output when ``None``.
        level: Lines below this level (``logging.INFO`` or ``"info"``) are
            dropped before any processing.

    .. versionadded:: 0.1.0
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # no locals: a model's frames hold request data, which has no place in logs
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )


class LogMonitor:
    """Logs failed requests, a sample of successful ones, slow ones and model loads.

    Lines (the event name first, then its fields):

    * ``request_failed``: every request whose outcome is not ``"ok"``, at
      ``error`` for a 5xx error (:class:`~modeldeploy.errors.ServiceError`,
      or an exception that is not a :class:`~modeldeploy.errors.ModelDeployError`)
      and at ``warning`` for a 4xx one
      (:class:`~modeldeploy.errors.RequestError`: the client's fault, not
      ours). Fields: ``request_id``, ``model``, ``version``, ``outcome``,
      ``code``, ``latency_s``, ``error`` (the class name), ``message`` (the
      client-safe message) and, when the error chains one, ``cause``
      (``"Type: text"``) with ``exc_info`` set to the cause, so the renderer
      adds its traceback. An error that is not a ModelDeployError is its own
      ``exc_info``.
    * ``request_slow``: at ``warning``, every successful request whose
      latency is at least ``slow_threshold``.
    * ``request_finished``: at ``info``, a deterministic sample of the other
      successful requests, with ``sample_rate`` so counts can be scaled back.
    * ``model_loaded``: at ``info``, with ``model``, ``version``, ``load_s``.

    Sampling keeps a count of successful requests and logs request ``n``
    (from 0) when ``floor(n * rate)`` steps up: the first one, then exactly
    one in ``1 / rate``; over ``N`` requests ``floor((N - 1) * rate) + 1``
    lines. No random number, no lock.

    Args:
        logger: A structlog bound logger (anything with ``info``, ``warning``
            and ``error`` taking an event name and fields); by default
            ``structlog.get_logger("modeldeploy")``, which follows the
            application's structlog configuration at first use.
        sample_rate: Fraction of successful requests logged, from 0 (none)
            to 1 (all).
        slow_threshold: Seconds from which a successful request is always
            logged as ``request_slow``; ``None`` disables it.

    Raises:
        ValueError: *sample_rate* is outside [0, 1] or *slow_threshold* is
            negative.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        logger: Any = None,
        sample_rate: float = 0.01,
        slow_threshold: float | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within [0, 1], got {sample_rate!r}")
        if slow_threshold is not None and slow_threshold < 0:
            raise ValueError(f"slow_threshold must be >= 0, got {slow_threshold!r}")
        # a lazy proxy: it reads structlog's configuration at first use, not now
        self._logger: Any = structlog.get_logger("modeldeploy") if logger is None else logger
        self.sample_rate = sample_rate
        self.slow_threshold = slow_threshold
        # next() on itertools.count is atomic under the GIL: a lock-free counter
        self._successes = itertools.count()

    def on_request_end(self, event: RequestFinished, /) -> None:
        """Log a failure always, a success when slow or sampled.

        .. versionadded:: 0.1.0
        """
        if event.outcome != "ok":
            self._log_failure(event)
            return
        n = next(self._successes)
        slow = self.slow_threshold
        if slow is not None and event.latency_s >= slow:
            self._logger.warning("request_slow", **_request_fields(event), slow_threshold=slow)
            return
        rate = self.sample_rate
        if rate and math.floor(n * rate) != math.floor((n - 1) * rate):
            self._logger.info("request_finished", **_request_fields(event), sample_rate=rate)

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        """Log the load at info level.

        .. versionadded:: 0.1.0
        """
        self._logger.info(
            "model_loaded", model=event.model, version=event.version, load_s=event.load_s
        )

    def _log_failure(self, event: RequestFinished) -> None:
        error = event.error
        fields = _request_fields(event)
        client_fault = False
        if isinstance(error, ModelDeployError):
            client_fault = error.http_status < 500
            fields["error"] = type(error).__name__
            fields["message"] = error.message
            cause = error.__cause__
            if cause is not None:
                fields["cause"] = f"{type(cause).__name__}: {cause}"
                fields["exc_info"] = cause
        elif error is not None:
            # not raised on purpose by modeldeploy: its own traceback is the story
            fields["error"] = type(error).__name__
            fields["message"] = str(error)
            fields["exc_info"] = error
        if client_fault:
            self._logger.warning("request_failed", **fields)
        else:
            self._logger.error("request_failed", **fields)


def _request_fields(event: RequestFinished) -> dict[str, Any]:
    """The fields every request line starts with, in their order."""
    return {
        "request_id": event.request_id,
        "model": event.model,
        "version": event.version,
        "outcome": event.outcome,
        "code": event.code,
        "latency_s": event.latency_s,
    }
