"""Drift of a model's inputs and outputs against their training distribution.

:func:`reference_statistics` summarises the training data once, at training
time, into a plain JSON-able mapping (the model store keeps it in the model's
manifest). :class:`DriftMonitor` bins a sample of the live inputs and outputs
into the reference's bins, over a sliding window, and exports per feature the
population stability index (PSI), the two-sample Kolmogorov-Smirnov statistic
and whether that statistic rejects the reference.

Memory is constant per feature (one count per bin per window chunk), and the
request path pays a counter and a modulo for the requests it does not sample.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import weakref
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, values

if TYPE_CHECKING:
    from modeldeploy.events import ModelLoaded, Predictions

__all__ = ["REFERENCE_FORMAT", "DriftMonitor", "FeatureDrift", "reference_statistics"]

REFERENCE_FORMAT: Final = "modeldeploy.drift/1"
"""
The ``format`` value of a mapping :func:`reference_statistics` returns.

.. versionadded:: 0.1.0
"""

_KINDS: Final = ("inputs", "outputs")


# -- reference statistics, at training time ------------------------------------


def reference_statistics(
    inputs: Any,
    outputs: Any = None,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    bins: int = 10,
) -> dict[str, Any]:
    """
    Summarise training data for a :class:`DriftMonitor`, as plain JSON.

    Each feature gets ``bins`` quantile bins (fewer when values repeat), the
    share of the data in each, and its count, mean and standard deviation.
    The result holds only these numbers, never the data, and survives
    ``json.dumps``/``json.loads`` unchanged.

    Args:
        inputs: The training inputs: rows of features (a 2-D array or a
            list of rows), one column (a 1-D array or list: one feature), a
            mapping of input name to its values (as V2 inputs reach a
            predictor), or a pandas DataFrame (its column names are the
            names).
        outputs: The model's outputs on those inputs, in the same forms;
            ``None`` watches inputs only.
        input_names: Names of the input columns, in order; the signature's
            input names when it has one per column. By default ``x0``,
            ``x1``, ... (or the mapping's keys). They become the ``feature``
            label of the drift metrics, so keep them few and fixed.
        output_names: Names of the output columns; by default ``y`` for one,
            ``y0``, ``y1``, ... for several.
        bins: Quantile bins per feature, at least 2.

    Returns:
        ``{"format": REFERENCE_FORMAT, "inputs": [...], "outputs": [...]}``,
        each list holding one ``{"name", "edges", "proportions", "count",
        "mean", "std"}`` per feature.

    Raises:
        ValueError: *bins* is below 2, a feature has no finite value, the
            columns are ragged, or the names do not match the columns.

    .. versionadded:: 0.1.0
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    result: dict[str, Any] = {"format": REFERENCE_FORMAT, "bins": bins}
    result["inputs"] = [
        _feature_reference(name, column, bins)
        for name, column in _columns(inputs, input_names, "x")
    ]
    result["outputs"] = (
        []
        if outputs is None
        else [
            _feature_reference(name, column, bins)
            for name, column in _columns(outputs, output_names, "y")
        ]
    )
    return result


def _columns(data: Any, names: Sequence[str] | None, prefix: str) -> list[tuple[str, list[float]]]:
    """Split training data into named columns of floats."""
    columns_of = getattr(data, "columns", None)
    if columns_of is not None and hasattr(data, "to_numpy"):  # a pandas DataFrame
        data = {str(c): data[c].to_numpy() for c in columns_of}
    if isinstance(data, Mapping):
        keys = list(data) if names is None else list(names)
        if set(keys) != set(data):
            raise ValueError(f"names {keys} do not match the mapping's keys {list(data)}")
        return [(str(k), _flat(data[k])) for k in keys]
    rows = _tolist(data)
    if not isinstance(rows, list) or not rows:
        raise ValueError("expected a non-empty sequence of values or rows")
    if all(_is_number(v) for v in rows):
        columns = [[float(v) for v in rows]]
    else:
        width = len(rows[0])
        if any(len(r) != width for r in rows):
            raise ValueError("rows of different lengths")
        columns = [[float(r[j]) for r in rows] for j in range(width)]
    if names is None:
        names = [prefix] if len(columns) == 1 and prefix == "y" else [
            f"{prefix}{j}" for j in range(len(columns))
        ]  # fmt: skip
    if len(names) != len(columns):
        raise ValueError(f"{len(names)} names for {len(columns)} columns")
    return [(str(n), c) for n, c in zip(names, columns, strict=True)]


def _feature_reference(name: str, values: list[float], bins: int) -> dict[str, Any]:
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        raise ValueError(f"feature {name!r} has no finite value")
    n = len(finite)
    # interior cut points at the quantiles; repeated values merge bins
    edges = sorted({finite[min(n - 1, (n * i) // bins)] for i in range(1, bins)})
    counts = [0] * (len(edges) + 1)
    for v in finite:
        counts[bisect_right(edges, v)] += 1
    mean = math.fsum(finite) / n
    var = math.fsum((v - mean) ** 2 for v in finite) / n
    return {
        "name": name,
        "edges": edges,
        "proportions": [c / n for c in counts],
        "count": n,
        "mean": mean,
        "std": math.sqrt(var),
    }


# -- streaming side --------------------------------------------------------------


@attrs.frozen
class FeatureDrift:
    """
    The drift of one feature over the monitor's window.

    Attributes:
        kind: ``"input"`` or ``"output"``.
        feature: The feature's name in the reference.
        observations: Values in the window.
        psi: Population stability index against the reference.
        ks: Largest gap between the window's and the reference's cumulative
            distribution, read at the reference's bin edges.
        detected: Whether ``ks`` rejects the reference at the monitor's
            ``alpha`` (the two-sample Kolmogorov-Smirnov test).

    .. versionadded:: 0.1.0
    """

    kind: str
    feature: str
    observations: int
    psi: float
    ks: float
    detected: bool


class _Feature:
    """The reference of one feature, and its counts per window chunk."""

    __slots__ = ("counts", "edges", "kind", "name", "ref_cdf", "ref_count", "ref_p", "seen")

    def __init__(self, kind: str, spec: Mapping[str, Any], chunks: int) -> None:
        self.kind = kind
        self.name = str(spec["name"])
        self.edges = [float(e) for e in spec["edges"]]
        proportions = [float(p) for p in spec["proportions"]]
        if len(proportions) != len(self.edges) + 1:
            raise ValueError(f"feature {self.name!r}: one proportion per bin expected")
        self.ref_count = int(spec["count"])
        # an empty reference bin would make PSI infinite: floor it at half a count
        floor = 0.5 / max(self.ref_count, 1)
        self.ref_p = [max(p, floor) for p in proportions]
        self.ref_cdf = list(itertools.accumulate(proportions))[:-1]
        self.counts = [[0] * len(proportions) for _ in range(chunks)]
        self.seen = [0] * chunks

    def add(self, chunk: int, values: Iterable[float]) -> None:
        counts, edges = self.counts[chunk], self.edges
        n = 0
        for v in values:
            if v == v and v not in (math.inf, -math.inf):  # NaN != NaN
                counts[bisect_right(edges, v)] += 1
                n += 1
        self.seen[chunk] += n

    def clear(self, chunk: int) -> None:
        self.counts[chunk] = [0] * len(self.ref_p)
        self.seen[chunk] = 0

    def drift(self, chunks: Sequence[int], critical: float) -> FeatureDrift | None:
        n = sum(self.seen[c] for c in chunks)
        if n == 0:
            return None
        bins = len(self.ref_p)
        counts = [sum(self.counts[c][b] for c in chunks) for b in range(bins)]
        psi = 0.0
        for c, q in zip(counts, self.ref_p, strict=True):
            p = (c + 0.5) / (n + 0.5 * bins)  # smoothed: an empty bin is not infinite
            psi += (p - q) * math.log(p / q)
        # the reference CDF stops before the last bin: the zip stops with it
        ks = max(
            (
                abs(cum / n - ref)
                for cum, ref in zip(itertools.accumulate(counts), self.ref_cdf, strict=False)
            ),
            default=0.0,
        )
        m = self.ref_count
        bound = critical * math.sqrt((n + m) / (n * m)) if m > 0 else math.inf
        return FeatureDrift(self.kind, self.name, n, psi, ks, ks > bound)


class _Window:
    """The sliding window of one model: ``chunks`` chunks of ``chunk_size`` values."""

    def __init__(self, reference: Mapping[str, Any], chunks: int, chunk_size: int) -> None:
        # one more chunk than the window holds: the one filling now
        self.size = chunks + 1
        self.chunk_size = chunk_size
        self.inputs = [_Feature("input", s, self.size) for s in reference.get("inputs", ())]
        self.outputs = [_Feature("output", s, self.size) for s in reference.get("outputs", ())]
        self.features = self.inputs + self.outputs
        if not self.features:
            raise ValueError("the reference has no feature")
        self.current = 0
        self.filled = 0  # complete chunks so far, up to size - 1
        self.lock = threading.Lock()

    def add(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> bool:
        """Count the values; True when a chunk completed (the statistics changed)."""
        with self.lock:
            chunk = self.current
            for features, items in ((self.inputs, inputs), (self.outputs, outputs)):
                if features:
                    for item in items:
                        _observe(features, item, chunk)
            if max([f.seen[chunk] for f in self.features]) < self.chunk_size:
                return False
            self.current = (chunk + 1) % self.size
            for f in self.features:
                f.clear(self.current)
            self.filled = min(self.filled + 1, self.size - 1)
            return True

    def drift(self, critical: float) -> list[FeatureDrift]:
        with self.lock:
            complete = [(self.current - 1 - i) % self.size for i in range(self.filled)]
            found = (f.drift(complete, critical) for f in self.features)
            return [d for d in found if d is not None]


def _is_number(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or _is_numpy_number(v)


def _is_numpy_number(v: object) -> bool:
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    return kind in ("i", "u", "f") and getattr(v, "ndim", 1) == 0


def _tolist(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # NumPy arrays and scalars
    return tolist() if callable(tolist) else value


def _flat(value: Any) -> list[float]:
    """Every number in *value* (a number, or nested sequences of numbers)."""
    value = _tolist(value)
    if isinstance(value, (list, tuple)):
        out: list[float] = []
        for v in value:
            out.extend(_flat(v))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def _observe(features: list[_Feature], item: Any, chunk: int) -> None:
    """Count one item: a row, rows, a mapping of name to values, or one value."""
    cls = item.__class__
    if cls is list or cls is tuple:
        value = item
    elif isinstance(item, Mapping):
        for f in features:
            found = item.get(f.name)
            if found is not None:
                f.add(chunk, _flat(found))
        return
    else:
        value = _tolist(item)
    if len(features) == 1:
        f = features[0]
        if (value.__class__ is float or value.__class__ is int) and value - value == 0:
            f.counts[chunk][bisect_right(f.edges, value)] += 1
            f.seen[chunk] += 1
        else:
            f.add(chunk, _flat(value))
        return
    if not isinstance(value, (list, tuple)) or not value:
        return
    rows = value if isinstance(value[0], (list, tuple)) else (value,)
    width = len(features)
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != width:
            continue
        for f, v in zip(features, row, strict=True):
            # the common case inlined: one bisect and two increments per value
            if (v.__class__ is float or v.__class__ is int) and v - v == 0:  # finite
                f.counts[chunk][bisect_right(f.edges, v)] += 1
                f.seen[chunk] += 1


class _Gauges:
    """The drift gauges of one (registry, namespace), shared by its monitors."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        labels = ("model", "version", "kind", "feature")
        self.psi = Gauge(
            "drift_psi", "Population stability index of a feature over the drift window.",
            labels, namespace=namespace, registry=None, multiprocess_mode="livemax",
        )  # fmt: skip
        self.ks = Gauge(
            "drift_ks", "Two-sample Kolmogorov-Smirnov statistic of a feature over the window.",
            labels, namespace=namespace, registry=None, multiprocess_mode="livemax",
        )  # fmt: skip
        self.detected = Gauge(
            "drift_detected", "1 when the KS test rejects the reference for a feature.",
            labels, namespace=namespace, registry=None, multiprocess_mode="livemax",
        )  # fmt: skip
        self.window = Gauge(
            "drift_window_observations", "Values of the most observed feature in the window.",
            ("model", "version"), namespace=namespace, registry=None,
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.all = (self.psi, self.ks, self.detected, self.window)
        registered: list[Gauge] = []
        try:
            for gauge in self.all:
                registry.register(gauge)
                registered.append(gauge)
        except ValueError as exc:
            for gauge in registered:
                registry.unregister(gauge)
            raise ValueError(
                f"drift metric names of namespace {namespace!r} are already registered on "
                "this registry by something other than a DriftMonitor"
            ) from exc
        self.lock = threading.Lock()


_gauges: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Gauges]] = (
    weakref.WeakKeyDictionary()
)
_gauges_lock = threading.Lock()


def _gauges_for(registry: CollectorRegistry, namespace: str) -> _Gauges:
    with _gauges_lock:
        by_namespace = _gauges.setdefault(registry, {})
        gauges = by_namespace.get(namespace)
        if gauges is None:
            gauges = by_namespace[namespace] = _Gauges(registry, namespace)
        return gauges


def _critical(alpha: float) -> float:
    """The asymptotic two-sample KS critical coefficient c(alpha)."""
    return math.sqrt(-0.5 * math.log(alpha / 2))


class DriftMonitor:
    """Watches a model's inputs and outputs drift from their training distribution.

    Built from the mapping :func:`reference_statistics` returned at training
    time. It samples one in ``round(1 / sample_rate)`` of the items it sees
    in :class:`~modeldeploy.events.Predictions` events and counts their
    values in the reference's quantile bins, over a window of ``window``
    values per feature that slides by ``window / chunks``. Each time it
    slides, it sets per feature:

    * ``modeldeploy_drift_psi{model,version,kind,feature}``: the population
      stability index; under 0.1 is stable, over 0.25 a large shift.
    * ``modeldeploy_drift_ks{...}``: the two-sample Kolmogorov-Smirnov
      statistic, read at the reference's bin edges (a lower bound of the
      exact one).
    * ``modeldeploy_drift_detected{...}``: 1 when that statistic rejects the
      reference at level ``alpha`` (it is compared with
      ``c(alpha) * sqrt((n + m) / (n * m))`` for window and reference sizes
      ``n`` and ``m``), else 0.
    * ``modeldeploy_drift_window_observations{model,version}``.

    ``kind`` is ``input`` or ``output`` and ``feature`` the reference's
    name for the column, so the labels are bounded by the reference, never
    by the data. A new version of a model starts a new window and drops the
    series of the previous one (zeroes them in multiprocess mode). The gauges
    are prometheus_client's, with the ``livemax`` multiprocess mode: with
    several worker processes, each keeps its own window and ``/metrics``
    reports the largest value.

    Items may be rows of features, several rows, a mapping of input name to
    values (V2 inputs), or one value for a one-feature reference; values
    that are not finite numbers, and items of another shape, are skipped.

    Args:
        reference: What :func:`reference_statistics` returned (it may have
            gone through JSON).
        model: Only watch this model; every model when ``None``.
        registry: Where the gauges live; ``prometheus_client.REGISTRY``
            when ``None``.
        namespace: Prefix of the metric names.
        sample_rate: Fraction of items observed, in (0, 1].
        window: Values per feature the statistics are computed over.
        chunks: How many steps the window slides by; the statistics change
            every ``window / chunks`` values.
        alpha: Significance level of the KS test, per feature and window.

    Raises:
        ValueError: The reference is not of :data:`REFERENCE_FORMAT`, or an
            argument is out of range.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        *,
        model: str | None = None,
        registry: CollectorRegistry | None = None,
        namespace: str = "modeldeploy",
        sample_rate: float = 0.1,
        window: int = 1000,
        chunks: int = 4,
        alpha: float = 0.001,
    ) -> None:
        if reference.get("format") != REFERENCE_FORMAT:
            raise ValueError(
                f"reference format {reference.get('format')!r} is not {REFERENCE_FORMAT!r}: "
                "build it with modeldeploy.reference_statistics()"
            )
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within (0, 1], got {sample_rate!r}")
        if chunks < 1 or window < chunks:
            raise ValueError(f"need window >= chunks >= 1, got {window} and {chunks}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be within (0, 1), got {alpha!r}")
        self.reference = reference
        # validates every feature now rather than at the first request
        _Window(reference, chunks, 1)
        self.model = model
        self.registry = REGISTRY if registry is None else registry
        self.sample_rate = sample_rate
        self.window = window
        self.chunks = chunks
        self.alpha = alpha
        self._stride = max(1, round(1 / sample_rate))
        self._chunk_size = -(-window // chunks)
        self._critical = _critical(alpha)
        self._gauges = _gauges_for(self.registry, namespace)
        self._next = 0  # items seen, for the sampling stride; races only shift the sample
        self._windows: dict[str, tuple[str, _Window]] = {}
        self._lock = threading.Lock()

    def on_predictions(self, event: Predictions, /) -> None:
        """Count a sample of the event's inputs and outputs.

        .. versionadded:: 0.1.0
        """
        if self.model is not None and event.model != self.model:
            return
        n = len(event.inputs)
        start = self._next
        self._next = start + n
        stride = self._stride
        first = -start % stride
        if first >= n:
            return
        window = self._window(event.model, event.version)
        if window.add(event.inputs[first::stride], event.outputs[first::stride]):
            self._publish(event.model, event.version, window)

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        """Start a new window when a model loads a version it was not watched at.

        .. versionadded:: 0.1.0
        """
        if self.model is None or event.model == self.model:
            self._window(event.model, event.version)

    def drift(self, model: str) -> list[FeatureDrift]:
        """The drift of each feature of *model* over its last complete window.

        Empty until ``window / chunks`` values of a feature were observed.

        .. versionadded:: 0.1.0
        """
        with self._lock:
            found = self._windows.get(model)
        return [] if found is None else found[1].drift(self._critical)

    def _window(self, model: str, version: str) -> _Window:
        found = self._windows.get(model)
        if found is not None and found[0] == version:
            return found[1]
        with self._lock:
            found = self._windows.get(model)
            if found is not None and found[0] == version:
                return found[1]
            window = _Window(self.reference, self.chunks, self._chunk_size)
            self._windows[model] = (version, window)
            if found is not None:
                self._forget(model, found[0], found[1])
            return window

    def _publish(self, model: str, version: str, window: _Window) -> None:
        g = self._gauges
        found = window.drift(self._critical)
        with g.lock:
            for d in found:
                labels = (model, version, d.kind, d.feature)
                g.psi.labels(*labels).set(d.psi)
                g.ks.labels(*labels).set(d.ks)
                g.detected.labels(*labels).set(1.0 if d.detected else 0.0)
            g.window.labels(model, version).set(max((d.observations for d in found), default=0))

    def _forget(self, model: str, version: str, window: _Window) -> None:
        g = self._gauges
        if values.ValueClass is not values.MutexValue:
            # multiprocess mode cannot remove a series from the files: zero them
            with g.lock:
                for f in window.features:
                    for gauge in (g.psi, g.ks, g.detected):
                        gauge.labels(model, version, f.kind, f.name).set(0.0)
                g.window.labels(model, version).set(0.0)
            return
        with g.lock:
            for f in window.features:
                for gauge in (g.psi, g.ks, g.detected):
                    with contextlib.suppress(KeyError):  # never published
                        gauge.remove(model, version, f.kind, f.name)
            with contextlib.suppress(KeyError):
                g.window.remove(model, version)
