"""
A Grafana dashboard for a service's metrics, built with Grafana's own SDK.

.. code-block:: console

    $ pip install 'modeldeploy[dashboard]'
    $ modeldeploy dashboard --title "Iris in production" > dashboard.json

The dashboard reads the metrics of :class:`~modeldeploy.monitors.PrometheusMonitor`
and :class:`~modeldeploy.monitors.DriftMonitor`, and the ``process_*`` metrics
prometheus_client exports by default. Its data source is a template variable
(``$datasource``, any Prometheus), as are the job scraped, the models and their
versions, so the JSON imports as it is into any Grafana.

The panels are built with ``grafana-foundation-sdk`` (the ``dashboard`` extra),
not written as JSON by hand, so the output follows the schema Grafana itself
generates from.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from .errors import ModelDeployError

if TYPE_CHECKING:
    from grafana_foundation_sdk.builders.dashboard import Dashboard

__all__ = ["DEFAULT_TITLE", "Panel", "Query", "dashboard", "panels", "variable_queries"]

DEFAULT_TITLE: Final = "modeldeploy"
"""
The dashboard's title unless one is given.

.. versionadded:: 0.1.0
"""

# the selectors every query narrows by; the variables are defined in _variables
_MODEL = 'model=~"$model"'
_VERSION = 'version=~"$version"'
_JOB = 'job=~"$job"'
_RATE = "$__rate_interval"


@attrs.frozen
class Query:
    """
    One PromQL expression of a panel.

    Attributes:
        expr: The expression, with the dashboard's variables (``$model``,
            ``$version``, ``$job``, ``$__rate_interval``) in it.
        legend: Grafana's legend format (``{{code}}``).
        data: Whether traffic to a served model gives it a value: ``"always"``,
            ``"errors"`` (when some requests fail), ``"drift"`` (when a
            :class:`~modeldeploy.monitors.DriftMonitor` watches the model),
            ``"batches"`` (when the service batches on workers) or
            ``"history"`` (a day of history). The tests run every query
            against a real Prometheus and check this.

    .. versionadded:: 0.1.0
    """

    expr: str
    legend: str = ""
    data: Literal["always", "errors", "drift", "batches", "history"] = "always"


@attrs.frozen
class Panel:
    """
    One panel of the dashboard, before it is built.

    Attributes:
        row: The title of the row it sits in.
        title: The panel's title.
        description: What it shows and how to read it.
        unit: Grafana's unit id (``"reqps"``, ``"s"``, ``"percentunit"``).
        queries: Its PromQL expressions.
        kind: ``"timeseries"`` or ``"stat"``.
        thresholds: ``(value, colour)`` steps after the base green one.
        show_name: For a stat, show the series' name (its labels) rather
            than its value.

    .. versionadded:: 0.1.0
    """

    row: str
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: Literal["timeseries", "stat"] = "timeseries"
    thresholds: tuple[tuple[float, str], ...] = ()
    show_name: bool = False


def _quantiles(metric: str, selector: str, by: str = "") -> tuple[Query, ...]:
    group = f"le, {by}" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric}_bucket{{{selector}}}[{_RATE}])))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    )


def panels(namespace: str = "modeldeploy") -> tuple[Panel, ...]:
    """
    The panels of the dashboard, with the metric names of *namespace*.

    Args:
        namespace: The ``namespace`` the monitors were built with.

    .. versionadded:: 0.1.0
    """
    ns = namespace
    requests = f"{ns}_requests_total{{{_MODEL}, {_VERSION}}}"
    errors = f'{ns}_requests_total{{{_MODEL}, {_VERSION}, code!="ok"}}'
    model = f"{{{_MODEL}}}"
    return (
        Panel(
            "Traffic", "Request rate by code",
            "Requests answered per second, by outcome code: ok or the error's stable code.",
            "reqps",
            (Query(f"sum by (code) (rate({requests}[{_RATE}]))", "{{code}}"),),
        ),
        Panel(
            "Traffic", "Error ratio by code",
            "Share of requests that failed, by error code (4xx client errors included).",
            "percentunit",
            (
                Query(
                    f"sum by (code) (rate({errors}[{_RATE}]))"
                    f" / ignoring (code) group_left sum(rate({requests}[{_RATE}]))",
                    "{{code}}", "errors",
                ),
            ),
            thresholds=((0.01, "orange"), (0.05, "red")),
        ),
        Panel(
            "Traffic", "Latency",
            "Request latency quantiles from the histogram, and p99 one day earlier.",
            "s",
            (
                *_quantiles(f"{ns}_request_duration_seconds", f"{_MODEL}, {_VERSION}"),
                Query(
                    f"histogram_quantile(0.99, sum by (le) (rate("
                    f"{ns}_request_duration_seconds_bucket{{{_MODEL}, {_VERSION}}}[{_RATE}]"
                    f" offset 1d)))",
                    "p99 a day ago", "history",
                ),
            ),
        ),
        Panel(
            "Load", "Queue depth",
            "Requests waiting for a worker, per model (read at scrape time).",
            "short",
            (Query(f"sum by (model) ({ns}_queue_depth{model})", "{{model}}"),),
        ),
        Panel(
            "Load", "In flight",
            "Requests started and not yet answered.",
            "short",
            (
                Query(
                    f"sum by (model, version) ({ns}_inflight_requests{{{_MODEL}, {_VERSION}}})",
                    "{{model}} {{version}}",
                ),
            ),
        ),
        Panel(
            "Load", "Batch size",
            "Requests computed together in one predict call: quantiles and mean.",
            "short",
            (
                *(
                    attrs.evolve(q, data="batches")
                    for q in _quantiles(f"{ns}_batch_size", _MODEL)
                ),
                Query(
                    f"sum(rate({ns}_batch_size_sum{model}[{_RATE}]))"
                    f" / sum(rate({ns}_batch_size_count{model}[{_RATE}]))",
                    "mean", "batches",
                ),
            ),
        ),
        Panel(
            "Load", "Queue wait and compute (p99)",
            "How long the oldest request of a batch waited, and one predict call took.",
            "s",
            (
                Query(
                    f"histogram_quantile(0.99, sum by (le) (rate("
                    f"{ns}_queue_wait_seconds_bucket{model}[{_RATE}])))",
                    "queue wait p99", "batches",
                ),
                Query(
                    f"histogram_quantile(0.99, sum by (le) (rate("
                    f"{ns}_batch_compute_seconds_bucket{model}[{_RATE}])))",
                    "compute p99", "batches",
                ),
            ),
        ),
        Panel(
            "Model", "Version live",
            "The version of each model that is loaded now, per model.",
            "none",
            (
                Query(
                    f"max by (model, version) ({ns}_model_info{model} == 1)",
                    "{{model}} {{version}}",
                ),
            ),
            kind="stat",
            show_name=True,
        ),
        Panel(
            "Model", "Load time",
            "How long the latest load and warm-up of each model took.",
            "s",
            (Query(f"max by (model) ({ns}_model_load_seconds{model})", "{{model}}"),),
            kind="stat",
        ),
        Panel(
            "Model", "Drift: PSI",
            "Population stability index of each feature over the drift window against "
            "its training reference: under 0.1 stable, over 0.25 a large shift.",
            "none",
            (
                Query(
                    f"max by (kind, feature) ({ns}_drift_psi{{{_MODEL}, {_VERSION}}})",
                    "{{kind}} {{feature}}", "drift",
                ),
            ),
            thresholds=((0.1, "orange"), (0.25, "red")),
        ),
        Panel(
            "Model", "Drift: KS statistic",
            "Largest gap between the window's and the reference's cumulative distribution "
            "of each feature (two-sample Kolmogorov-Smirnov); drifted features are flagged "
            f"in {ns}_drift_detected.",
            "none",
            (
                Query(
                    f"max by (kind, feature) ({ns}_drift_ks{{{_MODEL}, {_VERSION}}})",
                    "{{kind}} {{feature}}", "drift",
                ),
                Query(
                    f"sum({ns}_drift_detected{{{_MODEL}, {_VERSION}}})",
                    "features drifted", "drift",
                ),
            ),
        ),
        Panel(
            "Process", "CPU",
            "CPU seconds per second of each serving process.",
            "percentunit",
            (
                Query(
                    f"rate(process_cpu_seconds_total{{{_JOB}}}[{_RATE}])", "{{instance}} {{pid}}"
                ),
            ),
        ),
        Panel(
            "Process", "Memory",
            "Resident memory of each serving process.",
            "bytes",
            (Query(f"process_resident_memory_bytes{{{_JOB}}}", "{{instance}} {{pid}}"),),
        ),
        Panel(
            "Process", "Monitor errors",
            "Exceptions monitors raised, caught before they reached a request.",
            "short",
            (
                Query(
                    f"sum by (monitor) (rate({ns}_monitor_errors_total{{{_JOB}}}[{_RATE}]))",
                    "{{monitor}}",
                ),
            ),
        ),
    )  # fmt: skip


def variable_queries(namespace: str = "modeldeploy") -> dict[str, str]:
    """
    The queries that fill the ``job``, ``model`` and ``version`` variables.

    .. versionadded:: 0.1.0
    """
    info = f"{namespace}_model_info"
    return {
        "job": f"label_values({info}, job)",
        "model": f"label_values({info}{{{_JOB}}}, model)",
        "version": f"label_values({namespace}_requests_total{{{_JOB}, {_MODEL}}}, version)",
    }


def dashboard(
    title: str = DEFAULT_TITLE, *, namespace: str = "modeldeploy", uid: str | None = None
) -> dict[str, Any]:
    """
    Build the dashboard as the JSON model Grafana imports.

    Args:
        title: The dashboard's title.
        namespace: The ``namespace`` the monitors were built with.
        uid: Grafana's id of the dashboard; by default derived from *title*,
            so importing it again replaces it.

    Returns:
        The dashboard's JSON model, a plain ``dict`` (``json.dumps`` it).

    Raises:
        ModelDeployError: The ``dashboard`` extra is not installed.

    .. versionadded:: 0.1.0
    """
    builder = _build(title, namespace, uid if uid is not None else _uid(title))
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    encoded = JSONEncoder(sort_keys=True).encode(builder.build())
    result: dict[str, Any] = json.loads(encoded)
    return result


def _uid(title: str) -> str:
    # Grafana uids are at most 40 characters of [A-Za-z0-9_-]
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in title.lower())
    return ("modeldeploy-" + cleaned.strip("-"))[:40] if cleaned != "modeldeploy" else cleaned


def _build(title: str, namespace: str, uid: str) -> Dashboard:
    try:
        from grafana_foundation_sdk.builders import dashboard as gd
        from grafana_foundation_sdk.builders import prometheus, stat, timeseries
        from grafana_foundation_sdk.models import common
        from grafana_foundation_sdk.models import dashboard as models
    except ImportError as exc:
        raise ModelDeployError(
            "building the dashboard needs grafana-foundation-sdk: "
            "pip install 'modeldeploy[dashboard]'"
        ) from exc

    source = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
    queries = variable_queries(namespace)

    def variable(name: str, label: str) -> gd.QueryVariable:
        return (
            gd.QueryVariable(name)
            .label(label)
            .datasource(source)
            .query(queries[name])
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(models.VariableOption(selected=True, text="All", value="$__all"))
        )

    board = (
        gd.Dashboard(title)
        .uid(uid)
        .tags(["modeldeploy"])
        .description(_DESCRIPTION)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .editable()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .with_variable(gd.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(variable("job", "Job"))
        .with_variable(variable("model", "Model"))
        .with_variable(variable("version", "Version"))
    )
    row = None
    for panel in panels(namespace):
        if panel.row != row:
            row = panel.row
            board = board.with_row(gd.Row(row))
        built: timeseries.Panel | stat.Panel
        if panel.kind == "stat":
            built = (
                stat.Panel()
                .text_mode(
                    common.BigValueTextMode.NAME
                    if panel.show_name
                    else common.BigValueTextMode.AUTO
                )
                .graph_mode(common.BigValueGraphMode.NONE)
                .height(8)
                .span(4)
            )
        else:
            built = timeseries.Panel().fill_opacity(10).line_width(1).height(8).span(8)
        steps = [models.Threshold(value=None, color="green")] + [
            models.Threshold(value=value, color=colour) for value, colour in panel.thresholds
        ]
        built = (
            built.title(panel.title)
            .description(panel.description)
            .unit(panel.unit)
            .datasource(source)
            .thresholds(gd.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(steps))
        )
        for ref, query in zip(_REF_IDS, panel.queries, strict=False):
            built = built.with_target(
                prometheus.Dataquery()
                .expr(query.expr)
                .legend_format(query.legend or "__auto")
                .ref_id(ref)
                .datasource(source)
            )
        board = board.with_panel(built)
    return board


_REF_IDS: Final = "ABCDEFGH"  # one per query of a panel
_DESCRIPTION: Final = (
    "Requests, latency, load, model versions, drift and processes of services built "
    "with modeldeploy."
)
