"""
The rollout stage: which loaded model version answers a request, and the shadow.

Private machinery behind :meth:`Service.deploy <modeldeploy.Service.deploy>` and
its siblings. A :class:`Split` sends a weighted share of the requests to a canary
version, stable per key when a key header is named; a :class:`Shadow` computes a
copy of the live traffic on another version off the request's path and compares
the answers, which it never returns.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from ._workers import Deployment, call_one
from .errors import ModelDeployError
from .events import Predictions

__all__ = ["Shadow", "ShadowStats", "Split", "same_output"]

logger = logging.getLogger("modeldeploy")

_BUCKETS = 10_000  # a weight is kept to 1/10,000


class Split:
    """
    A weighted split of the requests between the live version and a canary.

    Args:
        canary: The canary deployment.
        weight: Share of the requests the canary answers, in [0, 1].
        key: A request header whose value picks the side: the same value
            always lands on the same side (a user, a session). ``None`` draws
            each request at random.
    """

    __slots__ = ("_threshold", "canary", "key", "weight")

    def __init__(self, canary: Deployment, weight: float, key: str | None) -> None:
        if not (0.0 <= weight <= 1.0 and math.isfinite(weight)):
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        self.canary = canary
        self.weight = weight
        self.key = key.lower() if key is not None else None
        self._threshold = round(weight * _BUCKETS)

    def pick(self, live: Deployment, headers: Mapping[str, str]) -> Deployment:
        """The deployment that answers a request with these headers."""
        value = headers.get(self.key) if self.key is not None else None
        if value is None:
            bucket = random.randrange(_BUCKETS)  # noqa: S311 - a traffic split, not a secret
        else:
            # crc32 is stable across processes and restarts, unlike hash()
            bucket = zlib.crc32(value.encode("utf-8", "surrogatepass")) % _BUCKETS
        return self.canary if bucket < self._threshold else live


class ShadowStats:
    """
    What a shadow has compared so far (a snapshot is a plain dict).

    Attributes:
        offered: Model calls of the live version copied to the shadow.
        dropped: Copies dropped because the shadow fell behind (its queue was full).
        matched: Items the shadow answered as the live version did.
        mismatched: Items it answered differently.
        failed: Items it failed on (raised, or answered with a wrong count).
        shadow_s: Seconds the shadow spent computing, in all.
    """

    __slots__ = ("_lock", "dropped", "failed", "matched", "mismatched", "offered", "shadow_s")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offered = self.dropped = self.matched = self.mismatched = self.failed = 0
        self.shadow_s = 0.0

    def snapshot(self) -> dict[str, float]:
        """The counts, as a dict."""
        with self._lock:
            return {
                "offered": self.offered,
                "dropped": self.dropped,
                "matched": self.matched,
                "mismatched": self.mismatched,
                "failed": self.failed,
                "shadow_s": self.shadow_s,
            }


class Shadow:
    """
    Computes a copy of the live traffic on another version, off the request's path.

    The live deployment's predictions hook offers each model call's inputs and
    outputs; a single daemon thread computes the shadow's answers and compares
    them with :func:`same_output`. Offering never blocks: when the shadow falls
    behind, copies are dropped and counted. The shadow's answers and failures
    never reach a client.

    Args:
        deployment: The shadow version.
        capacity: Model calls waiting for the shadow, at most.
    """

    def __init__(self, deployment: Deployment, capacity: int = 1024) -> None:
        self.deployment = deployment
        self.stats = ShadowStats()
        self._queue: queue.Queue[Predictions | None] = queue.Queue(capacity)
        self._thread = threading.Thread(
            target=self._run, name=f"modeldeploy-{deployment.name}-shadow", daemon=True
        )
        self._thread.start()

    def offer(self, event: Predictions) -> None:
        """Copy one live model call to the shadow; drop it when the shadow is behind."""
        stats = self.stats
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with stats._lock:
                stats.offered += 1
                stats.dropped += 1
            return
        with stats._lock:
            stats.offered += 1

    def stop(self, timeout: float | None = 5.0) -> None:
        """Compare what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            matched = mismatched = failed = 0
            started = time.perf_counter()
            for item, live in zip(event.inputs, event.outputs, strict=True):
                try:
                    answer = call_one(self.deployment, item, None)
                except ModelDeployError:
                    failed += 1
                    continue
                if same_output(answer, live):
                    matched += 1
                else:
                    mismatched += 1
            elapsed = time.perf_counter() - started
            stats = self.stats
            with stats._lock:
                stats.matched += matched
                stats.mismatched += mismatched
                stats.failed += failed
                stats.shadow_s += elapsed
            if mismatched or failed:
                logger.info(
                    "shadow %s version %s: %d differ, %d failed, against version %s",
                    self.deployment.name,
                    self.deployment.version,
                    mismatched,
                    failed,
                    event.version,
                )


def same_output(a: Any, b: Any) -> bool:
    """
    Whether two model outputs agree: arrays within float tolerance, the rest by ``==``.

    Floats compare with ``numpy.allclose``'s default tolerances (NaN equal to
    NaN): two versions of a model rarely agree to the last bit, and a shadow
    looks for answers that differ, not for rounding.
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_output(a[k], b[k]) for k in a)
    if type(a).__module__ == "numpy" or type(b).__module__ == "numpy":
        import numpy as np

        try:
            x, y = np.asarray(a), np.asarray(b)
            if x.shape != y.shape:
                return False
            if x.dtype.kind in "fc" or y.dtype.kind in "fc":
                return bool(np.allclose(x, y, equal_nan=True))
            return bool(np.array_equal(x, y))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_output(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-8) or (math.isnan(a) and math.isnan(b))
    try:
        return bool(a == b)
    except Exception:
        return False


def chain(
    first: Callable[[Predictions], None] | None, second: Callable[[Predictions], None]
) -> Callable[[Predictions], None]:
    """A predictions hook that calls *first* (when there is one), then *second*."""
    if first is None:
        return second

    def both(event: Predictions) -> None:
        first(event)
        second(event)

    return both
