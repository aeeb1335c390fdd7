"""LogMonitor and configure_json_logging: what is logged, at which level, how often."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from modeldeploy.errors import DecodeError, OverloadedError, PredictionError
from modeldeploy.events import ModelLoaded, RequestFinished
from modeldeploy.monitors import LogMonitor, configure_json_logging


def ok(latency_s: float = 0.001, request_id: str = "r") -> RequestFinished:
    return RequestFinished(
        model="iris", version="1", request_id=request_id, outcome="ok", code="ok",
        latency_s=latency_s,
    )  # fmt: skip


def failed(error: BaseException | None, code: str = "prediction_error") -> RequestFinished:
    return RequestFinished(
        model="iris", version="1", request_id="r-1", outcome="error", code=code,
        latency_s=0.25, error=error,
    )  # fmt: skip


def chained(error: Exception, cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except type(cause) as exc:
            raise error from exc
    except type(error) as raised:
        return raised


@pytest.fixture
def monitor() -> LogMonitor:
    return LogMonitor(structlog.get_logger(), sample_rate=1.0)


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_json_logging(stream)
    yield stream
    structlog.reset_defaults()


class TestFailures:
    def test_server_error_logged_at_error_with_code_and_cause(self, monitor: LogMonitor) -> None:
        cause = ZeroDivisionError("division by zero")
        error = chained(PredictionError(), cause)
        with capture_logs() as logs:
            monitor.on_request_end(failed(error))
        assert logs == [
            {
                "event": "request_failed",
                "log_level": "error",
                "request_id": "r-1",
                "model": "iris",
                "version": "1",
                "outcome": "error",
                "code": "prediction_error",
                "latency_s": 0.25,
                "error": "PredictionError",
                "message": "model failed to predict",
                "cause": "ZeroDivisionError: division by zero",
                "exc_info": cause,
            }
        ]

    def test_client_error_logged_at_warning(self, monitor: LogMonitor) -> None:
        cause = ValueError("Expecting value: line 1 column 1")
        error = chained(DecodeError("body is not valid JSON"), cause)
        with capture_logs() as logs:
            monitor.on_request_end(failed(error, code="decode_error"))
        (line,) = logs
        assert line["log_level"] == "warning"
        assert line["code"] == "decode_error"
        assert line["message"] == "body is not valid JSON"
        assert line["exc_info"] is cause

    def test_error_without_cause_has_no_traceback(self, monitor: LogMonitor) -> None:
        with capture_logs() as logs:
            monitor.on_request_end(failed(OverloadedError(retry_after=2), code="overloaded"))
        (line,) = logs
        assert line["log_level"] == "error"
        assert line["code"] == "overloaded"
        assert "exc_info" not in line
        assert "cause" not in line

    def test_foreign_exception_is_its_own_traceback(self, monitor: LogMonitor) -> None:
        error = KeyError("x")
        with capture_logs() as logs:
            monitor.on_request_end(failed(error, code="internal"))
        (line,) = logs
        assert line["log_level"] == "error"
        assert line["error"] == "KeyError"
        assert line["exc_info"] is error

    def test_failure_without_error_object_is_still_logged(self) -> None:
        monitor = LogMonitor(structlog.get_logger(), sample_rate=0.0)
        with capture_logs() as logs:
            monitor.on_request_end(failed(None, code="deadline_exceeded"))
        (line,) = logs
        assert line["log_level"] == "error"
        assert line["code"] == "deadline_exceeded"
        assert "error" not in line

    def test_every_failure_is_logged_whatever_the_sample_rate(self) -> None:
        monitor = LogMonitor(structlog.get_logger(), sample_rate=0.0)
        with capture_logs() as logs:
            for _ in range(50):
                monitor.on_request_end(failed(PredictionError()))
        assert len(logs) == 50


class TestSampling:
    def test_first_success_then_one_in_every_inverse_rate(self) -> None:
        monitor = LogMonitor(structlog.get_logger(), sample_rate=0.25)
        with capture_logs() as logs:
            for i in range(20):
                monitor.on_request_end(ok(request_id=str(i)))
        assert [line["request_id"] for line in logs] == ["0", "4", "8", "12", "16"]
        assert {line["event"] for line in logs} == {"request_finished"}
        assert {line["log_level"] for line in logs} == {"info"}
        assert {line["sample_rate"] for line in logs} == {0.25}

    @given(
        rate=st.floats(min_value=0.0, max_value=1.0),
        n=st.integers(min_value=0, max_value=400),
    )
    def test_logs_exactly_the_rate(self, rate: float, n: int) -> None:
        monitor = LogMonitor(structlog.get_logger(), sample_rate=rate)
        with capture_logs() as logs:
            for _ in range(n):
                monitor.on_request_end(ok())
        expected = 0 if n == 0 or rate == 0 else math.floor((n - 1) * rate) + 1
        assert len(logs) == expected
        assert abs(len(logs) - n * rate) <= 1

    def test_failures_do_not_advance_the_sampler(self) -> None:
        monitor = LogMonitor(structlog.get_logger(), sample_rate=0.5)
        with capture_logs() as logs:
            for i in range(4):
                monitor.on_request_end(failed(PredictionError()))
                monitor.on_request_end(ok(request_id=str(i)))
        assert [line["request_id"] for line in logs if line["event"] == "request_finished"] == [
            "0",
            "2",
        ]

    def test_slow_successes_are_always_logged(self) -> None:
        monitor = LogMonitor(structlog.get_logger(), sample_rate=0.0, slow_threshold=0.5)
        with capture_logs() as logs:
            monitor.on_request_end(ok(latency_s=0.1))
            monitor.on_request_end(ok(latency_s=0.5))
            monitor.on_request_end(ok(latency_s=3.0))
        assert [(line["event"], line["log_level"], line["latency_s"]) for line in logs] == [
            ("request_slow", "warning", 0.5),
            ("request_slow", "warning", 3.0),
        ]
        assert logs[0]["slow_threshold"] == 0.5

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"sample_rate": -0.1}, "sample_rate"),
            ({"sample_rate": 1.5}, "sample_rate"),
            ({"sample_rate": math.nan}, "sample_rate"),
            ({"slow_threshold": -1.0}, "slow_threshold"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            LogMonitor(**kwargs)


class TestModelLoaded:
    def test_logged_at_info(self, monitor: LogMonitor) -> None:
        with capture_logs() as logs:
            monitor.on_model_loaded(ModelLoaded(model="iris", version="2", load_s=1.5))
        assert logs == [
            {
                "event": "model_loaded",
                "log_level": "info",
                "model": "iris",
                "version": "2",
                "load_s": 1.5,
            }
        ]


class TestJSONLines:
    def test_configured_lines_parse_as_json(self, json_stream: io.StringIO) -> None:
        # built before configure is honoured: the default logger binds at first use
        monitor = LogMonitor(sample_rate=1.0)
        monitor.on_request_end(ok(latency_s=0.003, request_id="abc"))
        error = chained(PredictionError(), ZeroDivisionError("division by zero"))
        monitor.on_request_end(failed(error))
        monitor.on_model_loaded(ModelLoaded(model="iris", version="2", load_s=1.5))

        lines = [json.loads(line) for line in json_stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == [
            "request_finished",
            "request_failed",
            "model_loaded",
        ]
        success, failure, loaded = lines
        assert success["level"] == "info"
        assert success["request_id"] == "abc"
        assert success["latency_s"] == 0.003
        assert success["timestamp"].endswith("Z")
        assert failure["level"] == "error"
        assert failure["code"] == "prediction_error"
        assert failure["cause"] == "ZeroDivisionError: division by zero"
        (exception,) = [e for e in failure["exception"] if e["exc_type"] == "ZeroDivisionError"]
        assert exception["exc_value"] == "division by zero"
        assert exception["frames"]
        # request data lives in the model's locals: never in a log line
        assert all("locals" not in frame for frame in exception["frames"])
        assert loaded["load_s"] == 1.5

    def test_level_filters(self) -> None:
        stream = io.StringIO()
        configure_json_logging(stream, level="warning")
        try:
            monitor = LogMonitor(sample_rate=1.0)
            monitor.on_request_end(ok())
            monitor.on_request_end(failed(DecodeError(), code="decode_error"))
        finally:
            structlog.reset_defaults()
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["event"], line["level"]) for line in lines] == [
            ("request_failed", "warning")
        ]


def test_importing_configures_nothing() -> None:
    code = (
        "import structlog, modeldeploy.monitors\n"
        "modeldeploy.monitors.LogMonitor()\n"
        "assert not structlog.is_configured()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
