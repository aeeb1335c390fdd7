"""
Read timeouts the HTTP servers lack, so a slow or stalled client cannot hold them.

uvicorn and gunicorn bound idle keep-alive connections and the number of
connections, but neither bounds how long a client may take to send a request:
a client that declares ``Content-Length: 100000`` and sends 40 bytes, or that
sends one byte a second, keeps its connection (and under gunicorn, a thread)
for as long as it likes. The two modules here add a deadline for the headers
and one for the body; past either the client gets ``408 Request Timeout`` and
the connection is closed.

* :mod:`modeldeploy.servers.uvicorn`: HTTP protocol classes for uvicorn
  (``uvicorn.run(app, http=protocol())``).
* :mod:`modeldeploy.servers.gunicorn`: a gthread worker class for gunicorn
  (``gunicorn -k modeldeploy.servers.gunicorn.ThreadWorker``).

Both read their timeouts from the environment, so that every process a server
spawns sees the same values: :data:`HEADER_TIMEOUT_ENV` and
:data:`BODY_TIMEOUT_ENV`, in seconds. ``modeldeploy serve`` sets them from its
``--header-timeout`` and ``--body-timeout`` options.

This package imports neither server; each module imports its own.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
from typing import Final

__all__ = [
    "BODY_TIMEOUT_ENV",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "HEADER_TIMEOUT_ENV",
    "read_timeouts",
]

HEADER_TIMEOUT_ENV: Final = "MODELDEPLOY_HEADER_TIMEOUT"
"""Environment variable: seconds a client has to send a request's headers."""

BODY_TIMEOUT_ENV: Final = "MODELDEPLOY_BODY_TIMEOUT"
"""Environment variable: seconds a client has to send a request's body, once its headers are in."""

DEFAULT_HEADER_TIMEOUT: Final = 10.0
"""Seconds a client has to send its headers, from its first byte or from the previous answer."""

DEFAULT_BODY_TIMEOUT: Final = 30.0
"""Seconds a client has to send its whole body (64 MiB at 20 Mbit/s takes 27 s)."""


def read_timeouts() -> tuple[float, float]:
    """
    Return ``(header_timeout, body_timeout)`` from the environment, or the defaults.

    Raises:
        ValueError: A variable is set to something other than a positive number.

    .. versionadded:: 0.1.0
    """
    return (
        _seconds(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT),
        _seconds(BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT),
    )


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, got {text!r}")
    return value
