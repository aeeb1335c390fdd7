"""Monitor backends: Prometheus metrics, structured logs, drift, and a composite.

Each backend fits the :class:`~modeldeploy.Monitor` protocol without
inheriting it. Importing this package creates no metric and configures no
logging; building a monitor does the former, :func:`configure_json_logging`
the latter.
"""

from __future__ import annotations

from .composite import CompositeMonitor, MonitorFailed, RequestObserver
from .drift import DriftMonitor, FeatureDrift, reference_statistics
from .logs import LogMonitor, configure_json_logging
from .prometheus import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS, PrometheusMonitor

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS",
    "CompositeMonitor",
    "DriftMonitor",
    "FeatureDrift",
    "LogMonitor",
    "MonitorFailed",
    "PrometheusMonitor",
    "RequestObserver",
    "configure_json_logging",
    "reference_statistics",
]
