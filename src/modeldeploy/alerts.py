"""
Prometheus alerting rules for a service's metrics.

.. code-block:: console

    $ modeldeploy alert-rules --job modeldeploy > modeldeploy-rules.yml
    $ promtool check rules modeldeploy-rules.yml

The rules read the metrics of :class:`~modeldeploy.monitors.PrometheusMonitor`
and :class:`~modeldeploy.monitors.DriftMonitor`, and Prometheus's own ``up``:

* ``ModelDeployHighErrorRatio``: server errors (5xx, overload excepted) over a
  share of requests.
* ``ModelDeployHighLatency``: p99 latency over a bound.
* ``ModelDeployLatencyDrift``: p99 latency over a multiple of its own value
  one day earlier.
* ``ModelDeployOverloaded``: requests turned away because the queue is full.
* ``ModelDeployInputDrift`` and ``ModelDeployDriftDetected``: a feature's PSI
  over a threshold, or its distribution flagged by the drift monitor's test.
* ``ModelDeployNoReadyModel``: a scraped process reports no loaded model.
* ``ModelDeployTargetDown``: Prometheus cannot scrape a process.

Thresholds, the job, the rate window and the ``for`` durations are
arguments, so a test can drive a rule to firing in seconds.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, Final, Literal

import attrs

from .errors import ModelDeployError, OverloadedError

__all__ = ["Rule", "alert_rules", "rules", "server_error_codes", "to_yaml"]

GROUP: Final = "modeldeploy"
"""
The name of the rule group.

.. versionadded:: 0.1.0
"""


@attrs.frozen
class Rule:
    """
    One alerting rule.

    Attributes:
        alert: The alert's name.
        value: The PromQL expression whose value is compared.
        threshold: What the value is compared with (``> threshold``), a
            number or an expression; empty when *value* already filters.
        for_: How long the condition must hold before the alert fires.
        severity: ``"critical"`` (wake someone) or ``"warning"``.
        summary: One line, with ``$labels`` templates.
        description: What it means and what to look at.
        data: When *value* has data: ``"always"`` with traffic,
            ``"errors"`` with server errors, ``"overload"`` with requests
            turned away, ``"drift"`` with a drift monitor, or ``"down"``
            only while the condition holds. The tests check this.

    .. versionadded:: 0.1.0
    """

    alert: str
    value: str
    threshold: str
    for_: str
    severity: Literal["critical", "warning"]
    summary: str
    description: str
    data: Literal["always", "errors", "overload", "drift", "down"] = "always"

    @property
    def expr(self) -> str:
        """The rule's expression: *value* compared with *threshold*."""
        return f"{self.value} > {self.threshold}" if self.threshold else self.value


def server_error_codes() -> tuple[str, ...]:
    """
    The ``code`` label values of server errors (HTTP 5xx), overload excepted.

    Read from the error hierarchy, so a new 5xx error is counted without
    editing the rules. ``overloaded`` has its own rule.

    .. versionadded:: 0.1.0
    """
    codes = {ModelDeployError.code}  # "internal": an exception that is no ModelDeployError

    def walk(cls: type[ModelDeployError]) -> Iterator[type[ModelDeployError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    for cls in walk(ModelDeployError):
        if cls.http_status >= 500 and cls.code != OverloadedError.code:
            codes.add(cls.code)
    return tuple(sorted(codes))


def rules(
    *,
    namespace: str = "modeldeploy",
    job: str = "modeldeploy",
    window: str = "5m",
    error_ratio: float = 0.05,
    p99_seconds: float = 0.5,
    latency_drift: float = 1.5,
    psi: float = 0.25,
    for_: str | None = None,
) -> tuple[Rule, ...]:
    """
    The alerting rules, with the metric names of *namespace*.

    Args:
        namespace: The ``namespace`` the monitors were built with.
        job: A regular expression matching the Prometheus ``job`` label of
            the scraped services (the ``job_name`` of its scrape config).
        window: The range of ``rate()`` in the traffic rules.
        error_ratio: Share of requests failing with a server error above
            which ``ModelDeployHighErrorRatio`` fires.
        p99_seconds: p99 latency above which ``ModelDeployHighLatency`` fires.
        latency_drift: How many times its value of one day earlier p99
            latency may reach before ``ModelDeployLatencyDrift`` fires.
        psi: PSI above which ``ModelDeployInputDrift`` fires (0.25 is the
            usual mark of a large shift).
        for_: Replaces every rule's ``for`` duration (tests use ``"0s"``).

    .. versionadded:: 0.1.0
    """
    ns, w = namespace, window
    j = f"job=~{json.dumps(job)}"
    server = "|".join(server_error_codes())
    by = "job, model, version"

    def requests(extra: str = "") -> str:
        return f"sum by ({by}) (rate({ns}_requests_total{{{j}{extra}}}[{w}]))"

    def p99(range_: str, by_: str, offset: str = "") -> str:
        return (
            f"histogram_quantile(0.99, sum by ({by_}, le) "
            f"(rate({ns}_request_duration_seconds_bucket{{{j}}}[{range_}]{offset})))"
        )

    found = (
        Rule(
            "ModelDeployHighErrorRatio",
            f'{requests(f", code=~{json.dumps(server)}")} / {requests()}',
            repr(error_ratio), "5m", "critical",
            "{{ $labels.model }} {{ $labels.version }} fails {{ $value | humanizePercentage }} "
            "of its requests",
            "Requests end in server errors (5xx, overload excepted). The logs' request_failed "
            "lines carry the error code and its cause.",
            "errors",
        ),
        Rule(
            "ModelDeployHighLatency",
            p99(w, by), repr(p99_seconds), "10m", "warning",
            "{{ $labels.model }} {{ $labels.version }} answers in {{ $value | humanizeDuration }} "
            "at p99",
            "p99 latency is over its bound. Compare queue wait and batch compute time on the "
            "dashboard: a long queue wait means too few workers.",
        ),
        Rule(
            "ModelDeployLatencyDrift",
            p99("1h", "job, model"),
            f"{latency_drift!r} * {p99('1h', 'job, model', ' offset 1d')}",
            "30m", "warning",
            "{{ $labels.model }} p99 latency is over " + f"{latency_drift:g}"
            + " times its value a day ago",
            "p99 latency over the last hour is well above the same hour yesterday: a slower "
            "model version, more load, or a slower machine.",
        ),
        Rule(
            "ModelDeployOverloaded",
            f"sum by (job, model) (rate({ns}_requests_total{{{j}, code=\"overloaded\"}}[{w}]))",
            "0", "5m", "warning",
            "{{ $labels.model }} turns away {{ $value | humanize }} requests/s: its queue is full",
            "Requests are refused with 503 because the queue is full: add workers or "
            "processes, or raise max_queue if latency allows.",
            "overload",
        ),
        Rule(
            "ModelDeployInputDrift",
            f"max by ({by}, kind, feature) ({ns}_drift_psi{{{j}}})", repr(psi), "15m",
            "warning",
            "{{ $labels.model }} {{ $labels.kind }} {{ $labels.feature }} drifted: "
            "PSI {{ $value | humanize }}",
            "The distribution of a feature over the drift window is far from its training "
            "reference. Check the data source upstream; retrain if the shift is real.",
            "drift",
        ),
        Rule(
            "ModelDeployDriftDetected",
            f"max by ({by}, kind, feature) ({ns}_drift_detected{{{j}}})", "0", "15m",
            "warning",
            "{{ $labels.model }} {{ $labels.kind }} {{ $labels.feature }} is flagged as drifted",
            "The drift monitor's two-sample test rejects the training distribution for this "
            "feature over its window (see modeldeploy_drift_ks).",
            "drift",
        ),
        Rule(
            "ModelDeployNoReadyModel",
            f"up{{{j}}} == 1 unless on (job, instance) max by (job, instance) "
            f"({ns}_model_info{{{j}}}) == 1",
            "", "5m", "critical",
            "{{ $labels.instance }} serves no loaded model",
            "The process answers scrapes but reports no model version in "
            f"{ns}_model_info: the load failed or is still running. Check its logs.",
            "down",
        ),
        Rule(
            "ModelDeployTargetDown",
            f"up{{{j}}} == 0", "", "2m", "critical",
            "Prometheus cannot scrape {{ $labels.instance }}",
            "The process is down or its /metrics does not answer.",
            "down",
        ),
    )  # fmt: skip
    return found if for_ is None else tuple(attrs.evolve(r, for_=for_) for r in found)


def alert_rules(*, interval: str | None = None, **options: Any) -> dict[str, Any]:
    """
    The rules as a Prometheus rule file: ``{"groups": [...]}``.

    Args:
        interval: The group's evaluation interval; Prometheus's global
            ``evaluation_interval`` when ``None``.
        **options: Passed to :func:`rules`.

    Returns:
        A plain ``dict``; :func:`to_yaml` writes it as a rule file.

    .. versionadded:: 0.1.0
    """
    group: dict[str, Any] = {"name": GROUP}
    if interval is not None:
        group["interval"] = interval
    group["rules"] = [
        {
            "alert": rule.alert,
            "expr": rule.expr,
            "for": rule.for_,
            "labels": {"severity": rule.severity},
            "annotations": {"summary": rule.summary, "description": rule.description},
        }
        for rule in rules(**options)
    ]
    return {"groups": [group]}


def to_yaml(value: Any) -> str:
    """
    Write mappings, lists, strings and numbers as block-style YAML.

    Every string value is double-quoted with JSON's escapes, which YAML reads
    the same way, so no value needs a YAML library to come out right; keys
    that are plain identifiers stay bare. Floats keep a decimal point (YAML
    1.1 readers take ``1e+16`` for a string); NaN and infinities are YAML's.

    .. versionadded:: 0.1.0
    """
    return "\n".join(_yaml_lines(value, 0)) + "\n"


def _yaml_lines(value: Any, indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(value, dict) and value:
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                yield f"{pad}{_key(key)}:"
                yield from _yaml_lines(item, indent + 2)
            else:
                yield f"{pad}{_key(key)}: {_scalar(item)}"
    elif isinstance(value, list) and value:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                # the item's first line goes after the dash, the rest stay indented
                first, *rest = _yaml_lines(item, indent + 2)
                yield f"{pad}- {first[indent + 2 :]}"
                yield from rest
            else:
                yield f"{pad}- {_scalar(item)}"
    else:
        yield f"{pad}{_scalar(value)}"


_BARE_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# what a double-quoted YAML scalar holds as it is: printable, and no line break
# that a YAML 1.1 reader folds (NEL, LS, PS); the rest is escaped
_NOT_PRINTABLE: Final = re.compile(
    "[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _quoted(text: str) -> str:
    # JSON's escapes are YAML's, except that YAML joins no surrogate pair: keep
    # characters beyond the BMP as they are, escape what YAML cannot hold raw
    quoted = json.dumps(text, ensure_ascii=False)
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


# plain words a YAML 1.1 reader takes for a boolean or null, whatever their case
_RESERVED: Final = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n"})


def _key(key: object) -> str:
    text = str(key)
    bare = _BARE_KEY.fullmatch(text) and text.lower() not in _RESERVED
    return text if bare else _quoted(text)


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # YAML 1.1 readers take 1e+16 for a string: a float needs its dot
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return _quoted(str(value))
