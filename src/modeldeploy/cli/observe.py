"""
``modeldeploy dashboard`` and ``modeldeploy alert-rules``: what to watch a service with.

.. code-block:: console

    $ modeldeploy dashboard --title "Iris in production" > dashboard.json
    $ modeldeploy alert-rules --job iris > modeldeploy-rules.yml

Both print to standard output: a Grafana dashboard (JSON) built by
:func:`modeldeploy.dashboard.dashboard`, and a Prometheus rule file (YAML)
built by :func:`modeldeploy.alerts.alert_rules`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import alerts
from ..dashboard import DEFAULT_TITLE
from ..errors import ModelDeployError
from ._args import Commands, UsageError

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add the ``dashboard`` and ``alert-rules`` subcommands to the ``modeldeploy`` parser."""
    board = commands.add_parser(
        "dashboard",
        help="print a Grafana dashboard for the service's metrics (JSON)",
        description=(
            "Print a Grafana dashboard (JSON, importable as it is) of the metrics of "
            "PrometheusMonitor and DriftMonitor: request rate and errors, latency "
            "quantiles, queue depth, in-flight requests, batch size, the live model "
            "version, drift scores, and process CPU and memory. The Prometheus data "
            "source, job, models and versions are variables chosen in Grafana. "
            "Needs the dashboard extra: pip install 'modeldeploy[dashboard]'."
        ),
        epilog="Example: modeldeploy dashboard --title 'Iris in production' > dashboard.json",
    )
    board.add_argument(
        "--title", default=DEFAULT_TITLE, help="the dashboard's title (default: %(default)s)"
    )
    board.add_argument(
        "--uid", default=None, help="Grafana's id of the dashboard (default: from the title)"
    )
    _namespace(board)
    board.set_defaults(run=_dashboard)

    rules = commands.add_parser(
        "alert-rules",
        help="print Prometheus alerting rules for the service's metrics (YAML)",
        description=(
            "Print a Prometheus rule file: high error ratio, high p99 latency, p99 latency "
            "against its value a day earlier, overload rejections, input drift, no ready "
            "model, and a scrape target down. Check it with 'promtool check rules FILE' "
            "and list it under rule_files in prometheus.yml."
        ),
        epilog="Example: modeldeploy alert-rules --job iris > modeldeploy-rules.yml",
    )
    rules.add_argument(
        "--job",
        default="modeldeploy",
        help="regular expression matching the job label of the scraped services "
        "(default: %(default)s)",
    )
    _namespace(rules)
    rules.add_argument(
        "--window", default="5m", help="range of rate() in the traffic rules (default: 5m)"
    )
    rules.add_argument(
        "--error-ratio", type=float, default=0.05,
        help="server-error share of requests that alerts (default: %(default)s)",
    )  # fmt: skip
    rules.add_argument(
        "--p99", type=float, default=0.5, metavar="SECONDS",
        help="p99 latency that alerts (default: %(default)s)",
    )  # fmt: skip
    rules.add_argument(
        "--latency-drift", type=float, default=1.5, metavar="RATIO",
        help="p99 over this many times its value a day ago alerts (default: %(default)s)",
    )  # fmt: skip
    rules.add_argument(
        "--psi", type=float, default=0.25,
        help="population stability index of a feature that alerts (default: %(default)s)",
    )  # fmt: skip
    rules.add_argument(
        "--for", dest="for_", default=None, metavar="DURATION",
        help="replace every rule's 'for' duration (as '0s')",
    )  # fmt: skip
    rules.add_argument(
        "--interval", default=None, metavar="DURATION",
        help="the group's evaluation interval (default: Prometheus's global one)",
    )  # fmt: skip
    rules.set_defaults(run=_alert_rules)


def _namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        default="modeldeploy",
        help="the namespace the monitors were built with (default: %(default)s)",
    )


def _dashboard(options: argparse.Namespace) -> int:
    from ..dashboard import dashboard

    try:
        board = dashboard(options.title, namespace=options.namespace, uid=options.uid)
    except ModelDeployError as exc:
        raise UsageError(exc.message) from exc
    json.dump(board, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def _alert_rules(options: argparse.Namespace) -> int:
    document = alerts.alert_rules(
        interval=options.interval,
        namespace=options.namespace,
        job=options.job,
        window=options.window,
        error_ratio=options.error_ratio,
        p99_seconds=options.p99,
        latency_drift=options.latency_drift,
        psi=options.psi,
        for_=options.for_,
    )
    sys.stdout.write(alerts.to_yaml(document))
    return 0
