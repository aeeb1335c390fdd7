"""
Helpers for testing code that uses modeldeploy (ours first).

* :func:`client`: an in-process HTTP client over the ASGI or WSGI app (needs httpx).
* :mod:`modeldeploy.testing.strategies`: Hypothesis strategies for each
  serializer's data model (needs hypothesis).
* :mod:`modeldeploy.testing.pytest_plugin`: pytest fixtures, registered
  automatically when modeldeploy is installed.
* :class:`EchoPredictor`, :class:`GatedPredictor`, :class:`RecordingMonitor`.

``pip install "modeldeploy[testing]"`` brings httpx and hypothesis.

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
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..events import BatchExecuted, ModelLoaded, RequestFinished, RequestStarted
from ..messages import Signature

if TYPE_CHECKING:
    from ..adapters.asgi import ASGIApp
    from ..adapters.wsgi import WSGIApp
    from ..http import HTTPApp
    from ..service import Service
    from ._client import Client

__all__ = ["EXTRA", "EchoPredictor", "GatedPredictor", "RecordingMonitor", "client"]

EXTRA = "modeldeploy[testing]"
"""
The extra that brings what these helpers need: ``pip install "modeldeploy[testing]"``.

.. versionadded:: 0.1.0
"""


def client(
    target: Service | Iterable[Service] | HTTPApp | ASGIApp | WSGIApp,
    *,
    interface: Literal["asgi", "wsgi"] = "asgi",
    base_url: str = "http://testserver",
    **kwargs: Any,
) -> Client:
    """
    Return an HTTP client that calls *target* in this process, with no server.

    The client is an ``httpx.Client``: ``get``, ``post(json=...)``, ``headers``,
    ``response.json()`` work as usual. Requests go through the same adapter a
    server would run: the ASGI app on an event loop of its own (in a thread; the
    test stays synchronous), or the WSGI app on the calling thread. Use it as a
    context manager: entering starts the services (ASGI lifespan startup, which
    raises if a model fails to load), leaving closes them.

    Args:
        target: A :class:`~modeldeploy.Service`, a list of them, an
            :class:`~modeldeploy.http.HTTPApp`, or any ASGI (or, with
            ``interface="wsgi"``, WSGI) application, a FastAPI or Flask app
            that mounts ours included.
        interface: ``"asgi"`` (the default, as ``modeldeploy serve`` runs) or ``"wsgi"``.
        base_url: The URL requests are made against; paths are relative to it.
        **kwargs: Passed to ``httpx.Client`` (``headers``, ``timeout``...).

    Raises:
        ModuleNotFoundError: httpx is not installed (the ``testing`` extra).

    Example:
        >>> import modeldeploy as md
        >>> from modeldeploy.testing import client
        >>> with client(md.Service(lambda x: 2 * x, name="double")) as http:
        ...     http.post("/predict", json=21).json()
        42

    .. versionadded:: 0.1.0
    """
    try:
        from ._client import Client
    except ModuleNotFoundError as exc:
        if exc.name != "httpx":
            raise
        raise ModuleNotFoundError(
            f"modeldeploy.testing.client needs httpx: pip install {EXTRA!r}", name="httpx"
        ) from exc
    return Client(target, interface=interface, base_url=base_url, **kwargs)


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
