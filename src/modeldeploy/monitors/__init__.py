"""Monitor backends: Prometheus metrics, structured logs, drift, traces, and a composite.

Each backend fits the :class:`~modeldeploy.Monitor` protocol without
inheriting it. Importing this package creates no metric and configures no
logging; building a monitor does the former, :func:`configure_json_logging`
the latter. :class:`OpenTelemetryMonitor` imports OpenTelemetry (the ``otel``
extra) only when built.
"""

from __future__ import annotations

from .composite import CompositeMonitor, MonitorFailed, RequestObserver
from .drift import DriftMonitor, FeatureDrift, reference_statistics
from .logs import LogMonitor, configure_json_logging
from .otel import OpenTelemetryMonitor, add_trace_ids
from .prometheus import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS, PrometheusMonitor

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS",
    "CompositeMonitor",
    "DriftMonitor",
    "FeatureDrift",
    "LogMonitor",
    "MonitorFailed",
    "OpenTelemetryMonitor",
    "PrometheusMonitor",
    "RequestObserver",
    "add_trace_ids",
    "configure_json_logging",
    "reference_statistics",
]
