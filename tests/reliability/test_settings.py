"""The connection settings: CLI options, the environment the servers read, bad values."""

from __future__ import annotations

import pytest

from modeldeploy.cli import main
from modeldeploy.servers import (
    BODY_TIMEOUT_ENV,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_SEND_TIMEOUT,
    HEADER_TIMEOUT_ENV,
    SEND_TIMEOUT_ENV,
    read_timeouts,
    send_timeout,
)


def test_read_timeouts_default_without_the_environment(monkeypatch):
    monkeypatch.delenv(HEADER_TIMEOUT_ENV, raising=False)
    monkeypatch.delenv(BODY_TIMEOUT_ENV, raising=False)
    assert read_timeouts() == (DEFAULT_HEADER_TIMEOUT, DEFAULT_BODY_TIMEOUT)


def test_read_timeouts_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(HEADER_TIMEOUT_ENV, "2.5")
    monkeypatch.setenv(BODY_TIMEOUT_ENV, "7")
    assert read_timeouts() == (2.5, 7.0)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "soon"])
def test_read_timeouts_refuse_what_is_not_a_positive_number(monkeypatch, value):
    monkeypatch.setenv(BODY_TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=BODY_TIMEOUT_ENV):
        read_timeouts()


def test_the_send_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(SEND_TIMEOUT_ENV, raising=False)
    assert send_timeout() == DEFAULT_SEND_TIMEOUT
    monkeypatch.setenv(SEND_TIMEOUT_ENV, "4.5")
    assert send_timeout() == 4.5
    monkeypatch.setenv(SEND_TIMEOUT_ENV, "0")
    with pytest.raises(ValueError, match=SEND_TIMEOUT_ENV):
        send_timeout()


@pytest.mark.parametrize(
    "option",
    [
        "--header-timeout",
        "--body-timeout",
        "--send-timeout",
        "--keep-alive-timeout",
        "--max-connections",
    ],
)
@pytest.mark.parametrize("value", ["0", "-3", "never"])
def test_serve_refuses_bad_connection_settings(capsys, option, value):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "modeldeploy.demo:service", option, value])
    assert exit_.value.code == 2
    assert option in capsys.readouterr().err
