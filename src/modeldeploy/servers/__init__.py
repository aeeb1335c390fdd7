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
  (``gunicorn -k modeldeploy.servers.gunicorn.ThreadWorker``) that reads each
  request in full on its poller before a thread gets it.

Both read their timeouts from the environment, so that every process a server
spawns sees the same values: :data:`HEADER_TIMEOUT_ENV` and
:data:`BODY_TIMEOUT_ENV`, in seconds. ``modeldeploy serve`` sets them from its
``--header-timeout`` and ``--body-timeout`` options. The gunicorn worker also
reads :data:`MAX_BODY_SIZE_ENV`, the body limit it buffers up to, which
``modeldeploy serve`` sets to the app's ``max_body_size``, and both read
:data:`SEND_TIMEOUT_ENV` (``--send-timeout``): a connection whose client takes
none of its answer in that time is let go, with the thread (gunicorn) or the
memory (uvicorn) it held.

This package imports neither server; each module imports its own.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
from typing import Final

from ..serializers._base import DEFAULT_MAX_SIZE

__all__ = [
    "BODY_TIMEOUT_ENV",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_SEND_TIMEOUT",
    "HEADER_TIMEOUT_ENV",
    "MAX_BODY_SIZE_ENV",
    "SEND_TIMEOUT_ENV",
    "max_body_size",
    "read_timeouts",
    "send_timeout",
]

HEADER_TIMEOUT_ENV: Final = "MODELDEPLOY_HEADER_TIMEOUT"
"""Environment variable: seconds a client has to send a request's headers."""

BODY_TIMEOUT_ENV: Final = "MODELDEPLOY_BODY_TIMEOUT"
"""Environment variable: seconds a client has to send a request's body, once its headers are in."""

DEFAULT_HEADER_TIMEOUT: Final = 10.0
"""Seconds a client has to send its headers, from its first byte or from the previous answer."""

DEFAULT_BODY_TIMEOUT: Final = 30.0
"""Seconds a client has to send its whole body (64 MiB at 20 Mbit/s takes 27 s)."""

SEND_TIMEOUT_ENV: Final = "MODELDEPLOY_SEND_TIMEOUT"
"""Environment variable: seconds a client has to take each piece of an answer (gunicorn)."""

DEFAULT_SEND_TIMEOUT: Final = 30.0
"""Seconds a client has to take each piece of an answer (64 MiB at 20 Mbit/s takes 27 s)."""

MAX_BODY_SIZE_ENV: Final = "MODELDEPLOY_MAX_BODY_SIZE"
"""Environment variable: body bytes the gunicorn worker reads before a thread gets the request."""


def max_body_size() -> int:
    """
    Return the body limit the gunicorn worker buffers up to, from the environment.

    :class:`~modeldeploy.servers.gunicorn.ThreadWorker` reads a request's body on
    its poller up to this many bytes; a larger one goes to the application as it
    comes, for it to refuse (413). ``modeldeploy serve`` sets it to the app's
    ``max_body_size``; the default is the services' default limit, 64 MiB.

    Raises:
        ValueError: The variable is set to something other than a whole number >= 0.

    .. versionadded:: 0.1.0
    """
    text = os.environ.get(MAX_BODY_SIZE_ENV)
    if not text:
        return DEFAULT_MAX_SIZE
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{MAX_BODY_SIZE_ENV} must be a whole number of bytes, got {text!r}")
    return int(text)


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


def send_timeout() -> float:
    """
    Return the seconds a client has to take each piece of an answer, from the environment.

    Read by :class:`~modeldeploy.servers.gunicorn.ThreadWorker`, whose threads write
    answers with blocking sends: a client that reads nothing would hold one for as
    long as it likes once the answer outgrows the sockets' buffers.

    Raises:
        ValueError: The variable is set to something other than a positive number.

    .. versionadded:: 0.1.0
    """
    return _seconds(SEND_TIMEOUT_ENV, DEFAULT_SEND_TIMEOUT)


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
