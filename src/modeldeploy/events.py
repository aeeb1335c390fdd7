"""The typed events that monitors observe, one frozen class per hook."""

from __future__ import annotations

import attrs

__all__ = ["BatchExecuted", "ModelLoaded", "RequestFinished", "RequestStarted"]


@attrs.frozen
class RequestStarted:
    """
    A request entered the service.

    .. versionadded:: 0.1.0
    """

    model: str
    version: str
    request_id: str


@attrs.frozen
class RequestFinished:
    """
    A request left the service.

    Attributes:
        outcome: ``"ok"`` or ``"error"``.
        code: ``"ok"`` or the error's stable ``code`` (bounded, safe as a label).
        latency_s: Seconds from start to end.
        error: The error, for monitors that log it; ``None`` on success.

    .. versionadded:: 0.1.0
    """

    model: str
    version: str
    request_id: str
    outcome: str
    code: str
    latency_s: float
    error: BaseException | None = None


@attrs.frozen
class BatchExecuted:
    """
    The model computed one batch.

    .. versionadded:: 0.1.0
    """

    model: str
    version: str
    size: int
    queue_wait_s: float
    compute_s: float


@attrs.frozen
class ModelLoaded:
    """
    A model version finished loading and warming up.

    .. versionadded:: 0.1.0
    """

    model: str
    version: str
    load_s: float
