"""
The three pluggable interfaces: Serializer, Predictor and Monitor.

Backends fit these protocols without inheriting them. ``@runtime_checkable``
lets modeldeploy reject a wrong object early (it checks names, not signatures;
mypy checks signatures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .events import BatchExecuted, ModelLoaded, RequestFinished, RequestStarted
    from .messages import Signature

__all__ = ["Monitor", "Predictor", "RequestRecorder", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """
    **Protocol:** turns values of one data model into bytes and back.

    Attributes:
        name: Short registry name (``"msgpack"``).
        media_type: The canonical media type written in ``Content-Type``.
        media_types: Every media type this serializer reads, canonical first.

    ``loads`` raises only :class:`~modeldeploy.errors.ModelDeployError`
    subclasses: :class:`~modeldeploy.errors.DecodeError` for malformed or too
    deeply nested input, :class:`~modeldeploy.errors.PayloadTooLargeError`
    for input over the size limit. ``dumps`` raises
    :class:`~modeldeploy.errors.EncodeError` for a value outside its data model.

    .. versionadded:: 0.1.0
    """

    name: str
    media_type: str
    media_types: tuple[str, ...]

    def dumps(self, obj: Any, /) -> bytes:
        """Encode *obj*."""

    def loads(self, data: bytes | memoryview, /) -> Any:
        """Decode *data*."""


@runtime_checkable
class Predictor(Protocol):
    """
    **Protocol:** a loaded model that maps a batch of inputs to a batch of outputs.

    ``load()`` is called once before serving. ``predict(batch)`` returns a
    sequence of the same length as *batch*, item ``i`` answering input ``i``.
    ``signature`` (may be ``None``) declares the inputs and outputs that
    requests are validated against.

    .. versionadded:: 0.1.0
    """

    signature: Signature | None

    def load(self) -> None:
        """Load the model; called once before the first ``predict``."""

    def predict(self, batch: Sequence[Any], /) -> Sequence[Any]:
        """Return one output per input of *batch*, in order."""


@runtime_checkable
class Monitor(Protocol):
    """
    **Protocol:** observes a service; each hook takes one typed event.

    A monitor may implement any subset of the hooks; a missing hook is skipped.
    Hooks run on the request path, so they must be cheap, and they must not
    raise: the service isolates a monitor that does (counted and logged).

    A monitor that only counts requests may also offer the optional hook
    ``request_recorder(model, version) -> RequestRecorder``: the service then
    resolves a :class:`RequestRecorder` once per model version and calls it
    instead of ``on_request_start`` / ``on_request_end``, with no event built
    per request (:class:`~modeldeploy.monitors.PrometheusMonitor` does).

    A monitor that watches the data may also offer the optional hook
    ``on_predictions(event: Predictions)``: the model's inputs and outputs,
    one :class:`~modeldeploy.events.Predictions` event per ``predict`` call
    (a drift monitor does). The service builds
    that event only when a monitor has the hook, so it costs nothing
    otherwise. It is left out of the protocol's methods, as
    ``request_recorder`` is, so monitors without it still pass
    ``isinstance(monitor, Monitor)``.

    .. versionadded:: 0.1.0
    """

    def on_request_start(self, event: RequestStarted, /) -> None:
        """A request entered the service."""

    def on_request_end(self, event: RequestFinished, /) -> None:
        """A request left the service, successfully or not."""

    def on_batch(self, event: BatchExecuted, /) -> None:
        """The model computed one batch."""

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        """A model version finished loading and warming up."""


@runtime_checkable
class RequestRecorder(Protocol):
    """
    **Protocol:** counts the requests of one model version, without events.

    Returned by a monitor's optional ``request_recorder(model, version)``
    hook, once per model version; the service then calls ``start`` and
    ``end`` once each per request. Like hooks, they must be cheap and
    thread-safe, and the service isolates one that raises.

    .. versionadded:: 0.1.0
    """

    def start(self) -> object:
        """A request entered the service; what it returns is ignored."""

    def end(self, code: str, latency_s: float, /) -> None:
        """A request left: ``"ok"`` or the error's stable code, and its latency."""
