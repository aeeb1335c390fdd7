"""
The typed events that monitors observe, one class per hook.

Events are immutable ``NamedTuple`` values rather than frozen attrs classes:
two are built for every request on the hot path, and a NamedTuple is built in
about half the time (measured: 240 ns against 530 ns for seven fields).
Monitors read them by attribute; a new field, added last with a default,
breaks none of them.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BatchExecuted", "ModelLoaded", "RequestFinished", "RequestStarted"]


class RequestStarted(NamedTuple):
    """
    A request entered the service.

    .. versionadded:: 0.1.0
    """

    model: str
    version: str
    request_id: str


class RequestFinished(NamedTuple):
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


class BatchExecuted(NamedTuple):
    """
    The model computed one batch (on a worker; inline calls have no batch).

    .. versionadded:: 0.1.0
    """

    model: str
    version: str
    size: int
    queue_wait_s: float
    compute_s: float


class ModelLoaded(NamedTuple):
    """
    A model version finished loading and warming up.

    .. versionadded:: 0.1.0
    """

    model: str
    version: str
    load_s: float
