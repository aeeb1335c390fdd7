"""
Helpers for testing code that uses modeldeploy (ours first).

>>> from modeldeploy.testing import EchoPredictor, RecordingMonitor
>>> import modeldeploy as md
>>> monitor = RecordingMonitor()
>>> with md.Service(EchoPredictor(), monitors=[monitor], workers=0) as service:
...     service.predict([1, 2])
[1, 2]
>>> [e.code for e in monitor.finished]
['ok']
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from .events import BatchExecuted, ModelLoaded, RequestFinished, RequestStarted
from .messages import Signature

__all__ = ["EchoPredictor", "GatedPredictor", "RecordingMonitor"]


class EchoPredictor:
    """
    A batched predictor that returns each input unchanged (or mapped by *fn*).

    Attributes:
        batches: Every batch it was called with, in order.
        loads: How often ``load()`` ran.

    .. versionadded:: 0.1.0
    """

    name = "echo"
    version = "1"

    def __init__(
        self, fn: Callable[[Any], Any] | None = None, signature: Signature | None = None
    ) -> None:
        self.fn = fn
        self.signature = signature
        self.batches: list[list[Any]] = []
        self.loads = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # locks do not copy: a replica (a deep copy) gets its own
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def load(self) -> None:
        """Count the call."""
        self.loads += 1

    def predict(self, batch: Sequence[Any], /) -> list[Any]:
        """Record *batch* and return it (mapped by ``fn``)."""
        with self._lock:
            self.batches.append(list(batch))
        return [item if self.fn is None else self.fn(item) for item in batch]


class GatedPredictor(EchoPredictor):
    """
    An echo predictor that blocks in ``predict`` until :meth:`open` is called.

    Lets a test hold requests inside the model (to fill the queue, pass a
    deadline or close the service under load) with events instead of sleeps.

    Attributes:
        entered: Set as soon as one call is inside ``predict``.

    .. versionadded:: 0.1.0
    """

    name = "gated"

    def __init__(self, fn: Callable[[Any], Any] | None = None, timeout: float = 30.0) -> None:
        super().__init__(fn)
        self.entered = threading.Event()
        self._gate = threading.Event()
        self._timeout = timeout
        self.inside = 0

    def open(self) -> None:
        """Let every waiting and future call through."""
        self._gate.set()

    def predict(self, batch: Sequence[Any], /) -> list[Any]:
        """Wait for the gate (at most *timeout* seconds), then echo."""
        with self._lock:
            self.inside += 1
        self.entered.set()
        if not self._gate.wait(self._timeout):
            raise TimeoutError("GatedPredictor was never opened")
        return super().predict(batch)


class RecordingMonitor:
    """
    A monitor that keeps every event it sees, for assertions.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self.started: list[RequestStarted] = []
        self.finished: list[RequestFinished] = []
        self.batches: list[BatchExecuted] = []
        self.loaded: list[ModelLoaded] = []
        self._lock = threading.Lock()

    def on_request_start(self, event: RequestStarted, /) -> None:
        """Record the event."""
        with self._lock:
            self.started.append(event)

    def on_request_end(self, event: RequestFinished, /) -> None:
        """Record the event."""
        with self._lock:
            self.finished.append(event)

    def on_batch(self, event: BatchExecuted, /) -> None:
        """Record the event."""
        with self._lock:
            self.batches.append(event)

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        """Record the event."""
        with self._lock:
            self.loaded.append(event)
