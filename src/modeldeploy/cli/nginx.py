"""
``modeldeploy nginx-config``: print an nginx configuration for several ``modeldeploy serve``.

.. code-block:: console

    $ modeldeploy nginx-config --backend 127.0.0.1:8001 --backend 127.0.0.1:8002 > nginx.conf
    $ nginx -p "$PWD" -c "$PWD/nginx.conf" -e stderr

The configuration load-balances HTTP (and, with ``--grpc-backend``, the V2 gRPC
service) over the backends: passive health checks (``max_fails``,
``fail_timeout``), retries on the next backend for failed connections, keep-alive
connections to the backends, modeldeploy's body size limit and timeouts. The
retry rules are written in the configuration itself and in ``docs/scaling.md``.
The templates are ``nginx.conf.in``, ``nginx-http.conf.in`` and
``nginx-grpc.conf.in`` beside this module.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Final

from ..serializers._base import DEFAULT_MAX_SIZE
from ._args import Commands, UsageError, positive

__all__ = ["add_parser", "render"]

# HOST:PORT with HOST a name, an IPv4 address or a bracketed IPv6 address; nothing
# that could end an nginx directive (no space, ';', '{', '}', quotes)
_ADDRESS: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})")
# a listen address may also be a bare port
_LISTEN: Final = re.compile(rf"{_ADDRESS.pattern}|(?P<bare>[0-9]{{1,5}})")
_PLACEHOLDER: Final = re.compile(r"\{\{(\w+)\}\}")


def _address(text: str, *, listen: bool = False) -> str:
    match = (_LISTEN if listen else _ADDRESS).fullmatch(text)
    port = None if match is None else int(match["port"] or match["bare"])
    if port is None or not 0 < port < 65536:
        form = "HOST:PORT or PORT" if listen else "HOST:PORT"
        raise argparse.ArgumentTypeError(f"{text!r} is not {form} (for example 127.0.0.1:8001)")
    return text


def _listen_address(text: str) -> str:
    return _address(text, listen=True)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of bytes")
    return value


def _duration(seconds: float) -> str:
    """*seconds* in nginx's time syntax, which takes no fractions: ``5s``, ``250ms``."""
    milliseconds = max(1, round(seconds * 1000))
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


def _fill(template: str, values: Mapping[str, str]) -> str:
    text = resources.files(__package__).joinpath(template).read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda match: values[match[1]], text)


def render(options: argparse.Namespace) -> str:
    """
    Return the nginx configuration the parsed *options* describe.

    Args:
        options: The options of ``modeldeploy nginx-config``.

    Raises:
        UsageError: The options contradict each other.

    .. versionadded:: 0.1.0
    """
    if options.grpc_backend and options.grpc_listen == options.listen:
        raise UsageError("--grpc-listen must differ from --listen")
    fail_timeout = _duration(options.fail_timeout)

    def servers(backends: Sequence[str]) -> str:
        line = f"        server {{}} max_fails={options.max_fails} fail_timeout={fail_timeout};"
        return "\n".join(line.format(backend) for backend in dict.fromkeys(backends))

    # error and timeout always count as failures for max_fails; they are also the
    # only cases retried: a backend's own 5xx answer goes back to the client
    next_upstream = "error timeout" + (" non_idempotent" if options.retry_post else "")
    header = (
        "            add_header X-Upstream $upstream_addr always;"
        if options.upstream_header
        else "            # --upstream-header: add_header X-Upstream $upstream_addr always;"
    )
    values = {
        "max_fails": str(options.max_fails),
        "fail_timeout": fail_timeout,
        "http_servers": servers(options.backend),
        "grpc_servers": servers(options.grpc_backend or ()),
        "keepalive": str(options.keepalive),
        "keepalive_timeout": _duration(options.keepalive_timeout),
        "listen": options.listen,
        "grpc_listen": options.grpc_listen,
        "max_body_size": str(options.max_body_size),
        "connect_timeout": _duration(options.connect_timeout),
        "read_timeout": _duration(options.read_timeout),
        "retry_timeout": _duration(options.retry_timeout),
        "next_upstream": next_upstream,
        # each backend once: a request nobody can answer fails after one round
        "tries": str(len(set(options.backend))),
        "grpc_tries": str(len(set(options.grpc_backend or ()))),
        "upstream_header": header,
    }
    values["grpc"] = _fill("nginx-grpc.conf.in", values) if options.grpc_backend else ""
    http = _fill("nginx-http.conf.in", values)
    if options.snippet:
        return http
    return _fill(
        "nginx.conf.in",
        {
            "daemon": "on" if options.daemon else "off",
            "worker_processes": str(options.workers) if options.workers else "auto",
            "worker_connections": str(options.worker_connections),
            "access_log": "access.log modeldeploy buffer=64k flush=1s"
            if options.access_log
            else "off",
            "http": http.rstrip("\n"),
        },
    )


def add_parser(commands: Commands) -> None:
    """Add the ``nginx-config`` subcommand to the ``modeldeploy`` parser."""
    parser = commands.add_parser(
        "nginx-config",
        help="print an nginx configuration that load-balances several modeldeploy servers",
        description=(
            "Print an nginx configuration in front of several `modeldeploy serve` "
            "processes: an upstream of the backends with passive health checks, retries "
            "on the next backend when one fails to connect or dies mid-request, "
            "keep-alive connections to the backends, modeldeploy's body size limit and "
            "timeouts; with --grpc-backend, gRPC proxying of the V2 service too."
        ),
        epilog=(
            "Run it unprivileged: nginx -p DIR -c DIR/nginx.conf -e stderr (paths in the "
            "file are relative to DIR). --snippet prints only the http-context blocks, "
            "for a file in /etc/nginx/conf.d/."
        ),
    )
    parser.add_argument(
        "--backend",
        type=_address,
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="an HTTP backend (`modeldeploy serve --port PORT`); repeat for each",
    )
    parser.add_argument(
        "--listen",
        type=_listen_address,
        default="127.0.0.1:8080",
        metavar="ADDR",
        help="where nginx takes HTTP requests (default: %(default)s)",
    )
    parser.add_argument(
        "--grpc-backend",
        type=_address,
        action="append",
        metavar="HOST:PORT",
        help="a gRPC backend (`modeldeploy serve --grpc-port PORT`); repeat for each",
    )
    parser.add_argument(
        "--grpc-listen",
        type=_listen_address,
        default="127.0.0.1:8081",
        metavar="ADDR",
        help="where nginx takes gRPC calls, with --grpc-backend (default: %(default)s)",
    )
    parser.add_argument(
        "--max-body-size",
        type=_size,
        default=DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help="largest request body, as the services' max_body_size (default: %(default)s)",
    )
    parser.add_argument(
        "--max-fails",
        type=positive,
        default=1,
        metavar="N",
        help="failed attempts that take a backend out (default: %(default)s)",
    )
    parser.add_argument(
        "--fail-timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="seconds a failing backend stays out (default: %(default)s)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="seconds to connect to a backend before trying the next (default: %(default)s)",
    )
    parser.add_argument(
        "--read-timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help=(
            "seconds a backend may stay silent; keep it above the services' timeout, so "
            "it catches a hung backend, not a slow model (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--retry-timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds after which a failed request is not retried (default: %(default)s)",
    )
    parser.add_argument(
        "--retry-post",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "retry a POST that was sent to a backend which then failed (default: on; "
            "inference has no side effects; turn it off for a model that has some)"
        ),
    )
    parser.add_argument(
        "--keepalive",
        type=positive,
        default=32,
        metavar="N",
        help="idle connections to the backends each nginx worker keeps (default: %(default)s)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=_seconds,
        default=1.0,
        metavar="S",
        help=(
            "seconds an idle backend connection is kept; below the backend server's own "
            "(uvicorn 5, gunicorn 2) (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--upstream-header",
        action="store_true",
        help="answer with an X-Upstream header naming the backend(s) tried (for debugging)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request to access.log, with the backend that answered",
    )
    parser.add_argument(
        "--workers",
        type=positive,
        default=None,
        metavar="N",
        help="nginx worker processes (default: auto, one per core)",
    )
    parser.add_argument(
        "--worker-connections",
        type=positive,
        default=1024,
        metavar="N",
        help="connections per nginx worker, clients and backends (default: %(default)s)",
    )
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="let nginx detach (default: it stays in the foreground, for a supervisor)",
    )
    parser.add_argument(
        "--snippet",
        action="store_true",
        help="print only the http-context blocks, to include in an existing nginx.conf",
    )
    parser.set_defaults(run=_run)


def _run(options: argparse.Namespace) -> int:
    sys.stdout.write(render(options))
    return 0
