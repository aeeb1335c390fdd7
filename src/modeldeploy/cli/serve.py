"""
``modeldeploy serve``: serve a model over HTTP (and gRPC) from the shell.

.. code-block:: console

    $ modeldeploy serve modeldeploy.demo:service --port 8000
    $ modeldeploy serve myapp:service --server gunicorn --workers 2 --grpc-port 8001

``SPEC`` names what to serve; :func:`resolve` turns it into the
:class:`~modeldeploy.http.HTTPApp` every server runs. Three servers:

* ``uvicorn`` (the default): the ASGI adapter, in this process for one worker;
  with ``--workers N`` uvicorn spawns N processes that each import ``SPEC``
  again (through :func:`_asgi_app`).
* ``gunicorn``: the WSGI adapter on ``gthread`` workers, run as a child process
  that this one supervises; each worker imports ``SPEC`` itself.
* ``wsgiref``: the standard library's single-threaded server, for debugging.

With several processes, metrics use prometheus_client's multiprocess mode: a
temporary ``PROMETHEUS_MULTIPROC_DIR`` (unless one is set) that every process
writes and ``/metrics`` reads.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http
import importlib
import inspect
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, cast

from .._extras import INSTALL
from ..errors import ModelDeployError, ModelLoadError, ModelNotFoundError, NotReadyError
from ..http import HTTPApp, cannot_serve
from ..interfaces import Predictor
from ..messages import Response
from ..monitors import PrometheusMonitor
from ..predictors import predictor
from ..service import Service, State
from ._args import Commands, StartError, UsageError, configure_logging, port, positive

if TYPE_CHECKING:
    import grpc

    from ..adapters.asgi import ASGIApp
    from ..adapters.wsgi import WSGIApp

__all__ = ["SERVERS", "add_parser", "as_app", "resolve"]

logger = logging.getLogger("modeldeploy.cli")

SERVERS: Final = ("uvicorn", "gunicorn", "wsgiref")
"""
The servers ``modeldeploy serve --server`` can run.

.. versionadded:: 0.1.0
"""

_LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
_DEFAULT_THREADS: Final = 4
_GRACE_S: Final = 30.0  # seconds in-flight requests get to finish on SIGTERM
_PROGRESS_FIRST_S: Final = 1.0  # a load longer than this is logged ...
_PROGRESS_EVERY_S: Final = 5.0  # ... and again this often
_WORKER_BOOT_ERROR: Final = 3  # uvicorn's STARTUP_FAILURE, gunicorn's WORKER_BOOT_ERROR

# how a parent hands its configuration to the server processes it starts
_SPEC_ENV: Final = "MODELDEPLOY_SPEC"
_LOG_LEVEL_ENV: Final = "MODELDEPLOY_LOG_LEVEL"
_GUNICORN_ENV: Final = "MODELDEPLOY_GUNICORN"
_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_LISTENING_ENV: Final = "MODELDEPLOY_LISTENING"

_NAME: Final = r"[A-Za-z_]\w*"
_IMPORT_SPEC: Final = re.compile(
    rf"(?P<module>{_NAME}(?:\.{_NAME})*):(?P<attr>{_NAME}(?:\.{_NAME})*)"
)


# -- SPEC -> HTTPApp ------------------------------------------------------------------


def _import_spec(spec: str) -> object | None:
    """Load ``package.module:attribute``; ``None`` when *spec* has another form."""
    match = _IMPORT_SPEC.fullmatch(spec)
    if match is None:
        return None
    module_name, attr_path = match["module"], match["attr"]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # the module itself (or a parent package) is missing, not something it imports
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ModelNotFoundError(f"no module named {module_name!r}") from exc
        raise ModelLoadError(f"importing {module_name!r} failed: {_describe(exc)}") from exc
    except Exception as exc:
        raise ModelLoadError(f"importing {module_name!r} failed: {_describe(exc)}") from exc
    try:
        return functools.reduce(getattr, attr_path.split("."), module)
    except AttributeError as exc:
        raise ModelNotFoundError(f"{module_name!r} has no attribute {attr_path!r}") from exc


# --canary-alias, --canary-weight, --canary-key, for every server process
_CANARY_ALIAS_ENV: Final = "MODELDEPLOY_CANARY_ALIAS"
_CANARY_WEIGHT_ENV: Final = "MODELDEPLOY_CANARY_WEIGHT"
_CANARY_KEY_ENV: Final = "MODELDEPLOY_CANARY_KEY"
FOLLOW_ENV: Final = "MODELDEPLOY_FOLLOW_INTERVAL"
"""Seconds between two looks at a followed store alias (``ROOT/NAME@ALIAS``); default 2."""


def _store_spec(spec: str) -> object | None:
    """
    Load ``ROOT/NAME[@VERSION|ALIAS]`` from a model store; ``None`` when not a store path.

    An alias is followed: the service this process serves deploys the version
    the alias names whenever it moves (every worker process follows it alike).
    """
    from ..store import LATEST, AliasFollower, parse_spec  # only when SPEC is no import path

    parsed = parse_spec(spec)
    if parsed is None:
        return None
    store, name, ref = parsed
    service = Service(store.load(name, ref), monitors=[PrometheusMonitor()])
    canary_alias = os.environ.get(_CANARY_ALIAS_ENV) or None
    if ref == LATEST or ref in store.versions(name):
        if canary_alias is not None:
            raise ModelLoadError("--canary-alias needs SPEC to name an alias: ROOT/NAME@ALIAS")
    else:
        interval = float(os.environ.get(FOLLOW_ENV) or 2.0)
        AliasFollower(
            store,
            name,
            ref,
            service,
            interval=interval,
            canary_alias=canary_alias,
            canary_weight=float(os.environ.get(_CANARY_WEIGHT_ENV) or 0.05),
            canary_key=os.environ.get(_CANARY_KEY_ENV) or None,
        ).start()
        logger.info("following alias %s of model %s (every %g s)", ref, name, interval)
    # the admin deploy route, when on, loads versions from this store
    return HTTPApp(service, admin_token=_admin_token(), stores={name: store})


# How SPEC is read, in order: each loader returns the object SPEC names, or None
# when SPEC is not its form.
_LOADERS: Final[list[Callable[[str], object | None]]] = [_import_spec, _store_spec]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def as_app(target: object, spec: str = "the target") -> HTTPApp:
    """
    Wrap what a SPEC names into the :class:`~modeldeploy.http.HTTPApp` to serve.

    An HTTPApp is served as it is; an ASGI or WSGI app made by
    :func:`~modeldeploy.adapters.asgi` or :func:`~modeldeploy.adapters.wsgi` as
    the HTTPApp it wraps; a :class:`~modeldeploy.Service` alone; a
    :class:`~modeldeploy.Predictor`, a plain callable or a fitted
    scikit-learn-style estimator (the model itself) in a new Service, through
    :func:`modeldeploy.predictor`, with a :class:`~modeldeploy.PrometheusMonitor`
    on the default registry.

    Args:
        target: The object.
        spec: How the object was named, for error messages.

    Raises:
        ModelLoadError: *target* is none of these, or a class, or it holds a
            service that is already closed or failed (it could never answer).

    .. versionadded:: 0.1.0
    """
    app = _as_app(target, spec)
    for service in app.services.values():
        refused = cannot_serve(service)
        if refused is not None:
            raise ModelLoadError(refused)
    return app


ADMIN_ENV: Final = "MODELDEPLOY_ADMIN_TOKEN"
"""The bearer token of the admin routes ``modeldeploy serve --admin`` turns on."""
_ADMIN_ON_ENV: Final = "MODELDEPLOY_ADMIN"  # set by --admin for every server process


def _admin_token() -> str | None:
    """The admin token when ``--admin`` is on (checked non-empty at start), else None."""
    return os.environ.get(ADMIN_ENV) if os.environ.get(_ADMIN_ON_ENV) == "1" else None


def _as_app(target: object, spec: str) -> HTTPApp:
    if isinstance(target, HTTPApp):
        return target
    if isinstance(target, Service):
        return HTTPApp(target, admin_token=_admin_token())
    if isinstance(target, type):
        raise ModelLoadError(
            f"{spec} is the class {target.__name__}; name an instance "
            "(a Service, a Predictor, an HTTPApp or a callable)"
        )
    wrapped = _adapter_app(target)
    if wrapped is not None:
        return wrapped
    if isinstance(target, Predictor):
        return HTTPApp(Service(target, monitors=[PrometheusMonitor()]), admin_token=_admin_token())
    if callable(target) or any(callable(getattr(target, m, None)) for m in _ESTIMATOR_METHODS):
        # a function, or a fitted estimator (a scikit-learn Pipeline is not callable)
        service = Service(predictor(target), monitors=[PrometheusMonitor()])
        return HTTPApp(service, admin_token=_admin_token())
    raise ModelLoadError(
        f"{spec} is of type {type(target).__name__}; expected a Service, a Predictor, "
        "an HTTPApp, a callable or a scikit-learn-style estimator"
    )


_ESTIMATOR_METHODS: Final = ("predict", "predict_proba")


def _adapter_app(target: object) -> HTTPApp | None:
    """The HTTPApp inside an app made by our ASGI or WSGI adapter, else None."""
    from ..adapters.asgi import _ASGIApp
    from ..adapters.wsgi import _WSGIApp

    if isinstance(target, _ASGIApp | _WSGIApp):
        return target.app
    return None


def is_asgi_app(target: object) -> bool:
    """
    Whether *target* is an ASGI 3 application: ``async def app(scope, receive, send)``.

    What uvicorn checks, plus the three parameters, so that an ``async def``
    model of one argument is not taken for an app.
    """
    if isinstance(target, type) or not callable(target):
        return False
    call = target if inspect.isroutine(target) else type(target).__call__
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 3


def _target(spec: str) -> object:
    """The object *spec* names."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # `modeldeploy serve myapp:service` finds myapp.py where it runs, as uvicorn does
        sys.path.insert(0, cwd)
    for load in _LOADERS:
        target = load(spec)
        if target is not None:
            return target
    raise ModelNotFoundError(
        f"cannot read SPEC {spec!r}: expected package.module:attribute "
        "(for example modeldeploy.demo:service) or a model store's ROOT/NAME[@VERSION|ALIAS]"
    )


def _served(spec: str) -> HTTPApp | ASGIApp:
    """What ``modeldeploy serve`` runs for *spec*: our HTTPApp, or an ASGI app as it is."""
    target = _target(spec)
    if _adapter_app(target) is None and is_asgi_app(target):
        return cast("ASGIApp", target)
    return as_app(target, repr(spec))


def resolve(spec: str) -> HTTPApp:
    """
    Turn a ``SPEC`` into the :class:`~modeldeploy.http.HTTPApp` to serve.

    ``SPEC`` is ``package.module:attribute`` (the attribute may be dotted,
    ``myapp:models.iris``), imported with the current directory on
    ``sys.path``; the object it names is wrapped by :func:`as_app`.

    Args:
        spec: The ``SPEC`` argument of ``modeldeploy serve``.

    Raises:
        ModelNotFoundError: *spec* has no known form, or its module or
            attribute does not exist.
        ModelLoadError: Importing the module raised, or the object cannot be served.

    Example:
        >>> from modeldeploy.cli import resolve
        >>> resolve("modeldeploy.demo:service")
        HTTPApp(services=['demo'])

    .. versionadded:: 0.1.0
    """
    return as_app(_target(spec), repr(spec))


# -- the command line ---------------------------------------------------------------


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a weight between 0 and 1")
    return value


def add_parser(commands: Commands) -> None:
    """Add the ``serve`` subcommand to the ``modeldeploy`` parser."""
    serve = commands.add_parser(
        "serve",
        help="serve a model over HTTP (and optionally gRPC)",
        description=(
            "Serve SPEC over HTTP: the Open Inference Protocol (KServe V2) under /v2, "
            "POST /predict with content negotiation, and Prometheus metrics on /metrics. "
            "SIGTERM or SIGINT stops it gracefully: requests in flight finish and the "
            "services close."
        ),
        epilog=(
            "SPEC is package.module:attribute naming a Service, an HTTPApp, an ASGI app, "
            "a Predictor, a plain callable or a fitted scikit-learn estimator (the model; "
            "it is wrapped in a Service with a PrometheusMonitor). The current directory "
            "is on the import path. SPEC may also be ROOT/NAME[@VERSION|ALIAS], a version of "
            "a model store (latest by default; the key is read from MODELDEPLOY_STORE_KEY). "
            "Example: modeldeploy serve modeldeploy.demo:service --port 8000"
        ),
    )
    serve.add_argument("spec", metavar="SPEC", help="what to serve: package.module:attribute")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument("--port", type=port, default=8000, help="HTTP port (default: %(default)s)")
    serve.add_argument(
        "--workers",
        type=positive,
        default=1,
        metavar="N",
        help=(
            "server processes (default: %(default)s); with more than one, metrics use "
            "prometheus_client's multiprocess mode"
        ),
    )
    serve.add_argument(
        "--server",
        choices=SERVERS,
        default="uvicorn",
        help=(
            "uvicorn (ASGI), gunicorn (WSGI, gthread workers) or wsgiref (stdlib, "
            "single-threaded, for debugging) (default: %(default)s)"
        ),
    )
    serve.add_argument(
        "--threads",
        type=positive,
        default=None,
        metavar="T",
        help=f"threads per gunicorn worker process (gunicorn only; default: {_DEFAULT_THREADS})",
    )
    serve.add_argument(
        "--grpc-port",
        type=port,
        default=None,
        metavar="P",
        help="also serve the V2 gRPC API on this port, in this process (needs grpcio)",
    )
    _add_connection_options(serve)
    serve.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default="info",
        help="log level of modeldeploy and the server (default: %(default)s)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (off by default: it costs throughput)",
    )
    serve.add_argument(
        "--canary-alias",
        metavar="ALIAS",
        default=None,
        help=(
            "with SPEC ROOT/NAME@ALIAS: also follow this alias; while it names another "
            "version, that version answers --canary-weight of the requests"
        ),
    )
    serve.add_argument(
        "--canary-weight",
        type=_weight,
        default=0.05,
        metavar="W",
        help="the canary's share of the requests, 0 to 1 (default: %(default)s)",
    )
    serve.add_argument(
        "--canary-key",
        metavar="HEADER",
        default=None,
        help="a request header that keeps each client on one side of the canary",
    )
    serve.add_argument(
        "--admin",
        action="store_true",
        help=(
            f"serve the admin routes under /admin/models/ (deploy, rollback, promote), "
            f"behind the bearer token in ${ADMIN_ENV}; off by default: whoever holds the "
            "token picks the model that answers"
        ),
    )
    serve.set_defaults(run=_serve)


# -- connections: read timeouts, keep-alive, limits (docs/reliability.md) ----------

_DEFAULT_KEEP_ALIVE_S: Final = 5.0
_DEFAULT_MAX_CONNECTIONS: Final = 1000


def _add_connection_options(serve: argparse.ArgumentParser) -> None:
    from ..servers import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_SEND_TIMEOUT

    group = serve.add_argument_group(
        "connections", "how long and how many clients may hold a connection"
    )
    group.add_argument(
        "--header-timeout",
        type=_seconds,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="S",
        help="seconds a client has to send its headers; then 408 and close (default: %(default)s)",
    )
    group.add_argument(
        "--body-timeout",
        type=_seconds,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="S",
        help=(
            "seconds a client has to send its body once its headers are in; then 408 and "
            "close (default: %(default)s)"
        ),
    )
    group.add_argument(
        "--send-timeout",
        type=_seconds,
        default=DEFAULT_SEND_TIMEOUT,
        metavar="S",
        help=(
            "seconds a client has to take each piece of its answer; then the connection is "
            "closed, freeing the thread or the memory it held (default: %(default)s)"
        ),
    )
    group.add_argument(
        "--keep-alive-timeout",
        type=_seconds,
        default=_DEFAULT_KEEP_ALIVE_S,
        metavar="S",
        help="seconds an idle kept-alive connection stays open (default: %(default)s)",
    )
    group.add_argument(
        "--max-connections",
        type=positive,
        default=_DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=(
            "connections each server process holds at most; uvicorn answers more with 503, "
            "gunicorn leaves them in the listen backlog (default: %(default)s)"
        ),
    )


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _connection_settings(options: argparse.Namespace) -> None:
    """Hand the read and send timeouts to every server process through the environment."""
    from ..servers import BODY_TIMEOUT_ENV, HEADER_TIMEOUT_ENV, SEND_TIMEOUT_ENV

    os.environ[HEADER_TIMEOUT_ENV] = repr(options.header_timeout)
    os.environ[BODY_TIMEOUT_ENV] = repr(options.body_timeout)
    os.environ[SEND_TIMEOUT_ENV] = repr(options.send_timeout)


def _serve(options: argparse.Namespace) -> int:
    if options.threads is not None and options.server != "gunicorn":
        raise UsageError("--threads applies to --server gunicorn only")
    if options.server == "wsgiref" and options.workers != 1:
        raise UsageError("wsgiref runs one process: drop --workers or pick another --server")
    if options.grpc_port is not None and options.grpc_port == options.port:
        raise UsageError("--grpc-port must differ from --port")
    if options.canary_alias is not None:
        os.environ[_CANARY_ALIAS_ENV] = options.canary_alias
        os.environ[_CANARY_WEIGHT_ENV] = repr(options.canary_weight)
        if options.canary_key is not None:
            os.environ[_CANARY_KEY_ENV] = options.canary_key
    if options.admin:
        if not os.environ.get(ADMIN_ENV):
            raise UsageError(f"--admin needs a token in the environment variable {ADMIN_ENV}")
        os.environ[_ADMIN_ON_ENV] = "1"  # read by every server process as it builds its app
    if options.server != "wsgiref":
        _require(f"--server {options.server}", options.server)
    if options.grpc_port is not None:
        _require("--grpc-port", "grpc")
    configure_logging(options.log_level)
    _connection_settings(options)
    # before SPEC is imported: the metrics it creates must write to the shared directory
    several = options.workers > 1 or (
        options.server == "gunicorn" and options.grpc_port is not None
    )
    metrics_dir = _MultiprocessDir(several)
    try:
        try:
            served = _served(options.spec)
        except ModelDeployError as exc:
            raise UsageError(exc.message) from exc
        if not isinstance(served, HTTPApp):
            return _run_asgi_app(options, served)
        runner = {"uvicorn": _run_uvicorn, "gunicorn": _run_gunicorn, "wsgiref": _run_wsgiref}
        return runner[options.server](options, served)
    finally:
        metrics_dir.remove()


def _require(what: str, module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs {module}: pip install {INSTALL[module]}") from None


def _listening(options: argparse.Namespace, app: HTTPApp) -> str:
    models = ", ".join(f"{s.name!r} version {s.version!r}" for s in app.services.values())
    noun = "model" if len(app.services) == 1 else "models"
    processes = f"{options.workers} process{'es' if options.workers > 1 else ''}"
    if options.server == "gunicorn":
        processes += f", {options.threads or _DEFAULT_THREADS} threads each"
    return (
        f"serving {noun} {models} on http://{_host_for_url(options.host)}:{options.port} "
        f"({options.server}, {processes}); metrics on /metrics"
    )


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _inline(app: HTTPApp) -> bool:
    # workers=0 everywhere: compute on the event loop, as asgi(..., inline=True) does
    return all(service.workers == 0 for service in app.services.values())


# -- loading after the port is bound ---------------------------------------------------


class _Loading:
    """
    Starts an app's services on a thread of their own, logging progress.

    The servers bind their port first and start this next, so the health
    routes answer while a model loads (live 200, ready 400): a liveness probe
    does not kill a pod whose model takes minutes to load.
    """

    def __init__(self, app: HTTPApp, on_done: Callable[[str | None], None]) -> None:
        self.app = app
        self.done = threading.Event()
        self.failure: str | None = None
        self._on_done = on_done
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        """Start loading, once."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="modeldeploy-load", daemon=True).start()

    def _load(self) -> None:
        threading.Thread(target=self._progress, name="modeldeploy-progress", daemon=True).start()
        try:
            self.failure = self.app.start_services()
        except Exception as exc:  # start_services logs and returns failures; in case
            logger.exception("loading failed")
            self.failure = str(exc)
        finally:
            self.done.set()
        self._on_done(self.failure)

    def _progress(self) -> None:
        started = time.monotonic()
        interval = _PROGRESS_FIRST_S
        while not self.done.wait(interval):
            loading = [
                repr(s.name)
                for s in self.app.services.values()
                if s.state in (State.NEW, State.STARTING)
            ]
            if loading:
                noun = "model" if len(loading) == 1 else "models"
                logger.info(
                    "loading %s %s: %.0fs so far; /v2/health/live answers, ready does not yet",
                    noun,
                    ", ".join(loading),
                    time.monotonic() - started,
                )
            interval = _PROGRESS_EVERY_S


def _while_loading(app: HTTPApp, method: str, path: str, headers: Mapping[str, str]) -> Response:
    """The answer to a GET that comes while the services load: health, metadata, /metrics."""
    return app(method, path, headers, b"")


def _loading_refusal(app: HTTPApp, path: str) -> Response:
    return app.error(path, NotReadyError("the model is still loading"))


class _ASGIWhileLoading:
    """An ASGI app: :func:`_while_loading` until loading is done, then *inner*."""

    def __init__(
        self, app: HTTPApp, inner: ASGIApp, loading: _Loading, *, load_on_startup: bool
    ) -> None:
        self.app = app
        self.inner = inner
        self.loading = loading
        self._load_on_startup = load_on_startup
        self._loaded = False  # loading.done seen set: a plain attribute, read per request
        # the direct lane of modeldeploy's uvicorn protocol, once loaded (the adapter's)
        self._direct_route = getattr(inner, "direct_route", None)
        self.direct_answer = getattr(inner, "direct_answer", None)
        self.max_body_size = app.max_body_size

    def direct_route(self, method: str, path: str) -> Any:
        """The adapter's :meth:`~modeldeploy.adapters.asgi` direct route, once loaded."""
        if not self._loaded or self._direct_route is None:
            return None
        return self._direct_route(method, path)

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # once loaded, the adapter's own coroutine, with no frame of ours around it
        # (uvicorn runs this with interface="asgi3": it awaits what the call returns);
        # inlined for speed: 0.3 us a request in process, about 1 us in a server
        if self._loaded and scope["type"] == "http":
            return self.inner(scope, receive, send)
        return self._call(scope, receive, send)

    async def _call(self, scope: Any, receive: Any, send: Any) -> None:
        if self.loading.done.is_set():
            self._loaded = True
            if scope["type"] == "http":
                await self.inner(scope, receive, send)
                return
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            # a prediction waits for the load, as the adapter's first requests do: with
            # several workers on one socket, a loading one must not fail what it accepts
            await asyncio.to_thread(self.loading.done.wait)
            await self.inner(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        response = _while_loading(self.app, scope["method"], scope["path"], headers)
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        raw.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        body = b"" if scope["method"] == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._load_on_startup:
                    self.loading.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(_close, self.app, self.loading)
                await send({"type": "lifespan.shutdown.complete"})
                return


class _WSGIWhileLoading:
    """
    A WSGI app: :func:`_while_loading` until loading is done, then *inner*.

    A request other than a GET waits for the load on its thread (gunicorn's
    gthread), or, with *wait* false (wsgiref's single thread, which the
    health probes need), is refused with 503.
    """

    def __init__(self, app: HTTPApp, inner: WSGIApp, loading: _Loading, *, wait: bool) -> None:
        self.app = app
        self.inner = inner
        self.loading = loading
        self._wait = wait

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.loading.done.is_set():
            return self.inner(environ, start_response)
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        if method in ("GET", "HEAD"):
            response = _while_loading(
                self.app, method, path, {"accept": environ.get("HTTP_ACCEPT", "")}
            )
        elif self._wait:
            self.loading.done.wait()
            return self.inner(environ, start_response)
        else:
            response = _loading_refusal(self.app, path)
        status = http.HTTPStatus(response.status)
        out = [*response.headers.items(), ("Content-Length", str(len(response.body)))]
        start_response(f"{status.value} {status.phrase}", out)
        return [b""] if method == "HEAD" else [response.body]


def _close(app: HTTPApp, loading: _Loading | None) -> None:
    """Close every service; while still loading, leave them (the threads are daemons)."""
    if loading is not None and not loading.done.is_set():
        logger.warning("stopped before the models finished loading")
        return
    for service in app.services.values():
        service.close(timeout=_GRACE_S)


def _when_loaded(
    options: argparse.Namespace, app: HTTPApp, failed: list[str], stop: Callable[[], None]
) -> Callable[[str | None], None]:
    """The ``_Loading`` callback of a server run in this process.

    Once loaded it logs that the server listens; a failure is added to
    *failed*, logged, and *stop* is called.
    """

    def done(failure: str | None) -> None:
        if failure is None:
            logger.info("%s", _listening(options, app))
        else:
            failed.append(failure)
            logger.error("cannot serve: %s", failure)
            stop()

    return done


def _exit_worker(failure: str | None) -> None:
    """In a server's worker process: a model that fails to load stops the whole server."""
    if failure is not None:
        logger.error("cannot serve: %s", failure)
        # the servers' "failed to boot" status: uvicorn's and gunicorn's
        # supervisors stop instead of starting a worker that fails again
        os._exit(_WORKER_BOOT_ERROR)


# -- signals and the gRPC server beside HTTP ---------------------------------------


class _Stop:
    """SIGTERM and SIGINT handlers that set an event instead of killing the process."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.forward: Callable[[int], None] | None = None
        self.failed = False  # stopped because a model failed to load

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.is_set():
            logger.info("received %s, shutting down", signal.Signals(signum).name)
        self.event.set()
        if self.forward is not None:
            self.forward(signum)


def _start_grpc(options: argparse.Namespace, app: HTTPApp) -> grpc.Server | None:
    """Bind and start the gRPC server; its services start with the HTTP ones."""
    if options.grpc_port is None:
        return None
    from ..adapters.grpc import server

    address = f"{_host_for_url(options.host)}:{options.grpc_port}"
    try:
        grpc_server, _ = server(app, address)
    except RuntimeError as exc:
        # grpc's own text ("Failed to bind to address ...") names no cause we know
        raise StartError(
            f"cannot listen for gRPC on {address}: the port is taken or the address "
            "is not this machine's"
        ) from exc
    grpc_server.start()
    where = "this process" if options.workers == 1 else "the supervising process"
    if options.server == "gunicorn":
        where = "the supervising process"
    logger.info("serving gRPC (V2 GRPCInferenceService) on %s, in %s", address, where)
    return grpc_server


def _shutdown(app: HTTPApp, grpc_server: grpc.Server | None, loading: _Loading | None) -> None:
    if grpc_server is not None:
        grpc_server.stop(grace=_GRACE_S).wait()
    _close(app, loading)
    logger.info("stopped")


class _MultiprocessDir:
    """
    prometheus_client's multiprocess mode for several processes.

    A temporary ``PROMETHEUS_MULTIPROC_DIR`` unless one is set, put in the
    environment before ``SPEC`` is imported, so that the metrics of this
    process (the gRPC requests it answers) are shared too.
    """

    def __init__(self, several: bool) -> None:
        self.path: str | None = None
        if not several:
            return
        if not os.environ.get(_MULTIPROC_ENV):
            self.path = tempfile.mkdtemp(prefix="modeldeploy-metrics-")
            os.environ[_MULTIPROC_ENV] = self.path
        from prometheus_client import values

        # prometheus_client picks its value class once, when imported, from the
        # environment; modeldeploy imported it before the variable was set
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(_MULTIPROC_ENV, None)


def _mark_dead(pid: int | None) -> None:
    """Drop the live-gauge files of a dead worker: prometheus_client's and the monitor's."""
    if pid is not None and os.environ.get(_MULTIPROC_ENV):
        from modeldeploy.monitors.prometheus import mark_process_dead

        mark_process_dead(pid)


# -- uvicorn ---------------------------------------------------------------------------


def _asgi_app() -> ASGIApp:
    """
    The ASGI application of each uvicorn worker process, built from ``SPEC``.

    ``modeldeploy serve --workers N`` runs uvicorn with this factory: uvicorn
    spawns fresh processes, which import ``SPEC`` (from the environment)
    themselves, and load the models once serving.
    """
    from ..adapters.asgi import asgi

    configure_logging(os.environ.get(_LOG_LEVEL_ENV, "info"))
    served = _served(os.environ[_SPEC_ENV])
    if not isinstance(served, HTTPApp):
        return served
    loading = _Loading(served, _exit_worker)
    inner = asgi(served, inline=_inline(served))
    return _ASGIWhileLoading(served, inner, loading, load_on_startup=True)


def _uvicorn_options(options: argparse.Namespace) -> dict[str, Any]:
    from ..servers.uvicorn import protocol as uvicorn_protocol

    return {
        "host": options.host,
        "port": options.port,
        "log_level": options.log_level,
        "access_log": options.access_log,
        "lifespan": "on",
        "timeout_graceful_shutdown": int(_GRACE_S),
        # read deadlines, idle keep-alive and a connection limit (docs/reliability.md)
        "http": uvicorn_protocol(),
        # every app served is ASGI 3 (is_asgi_app checks), and _ASGIWhileLoading's
        # __call__ returns the adapter's coroutine rather than being one
        "interface": "asgi3",
        # no "server: uvicorn" on every answer: it tells a scanner what runs here, and
        # costs a header a response (the Date header HTTP asks for stays)
        "server_header": False,
        "timeout_keep_alive": options.keep_alive_timeout,
        "limit_concurrency": options.max_connections,
    }


def _run_uvicorn(options: argparse.Namespace, app: HTTPApp) -> int:
    import uvicorn

    from ..adapters.asgi import asgi

    stop = _Stop()
    # uvicorn re-raises the signal it stopped on once it is done; these
    # handlers take it, so the process exits 0 instead of dying by SIGTERM
    stop.install()
    grpc_server = None
    loading: _Loading | None = None
    try:
        grpc_server = _start_grpc(options, app)
        if stop.event.is_set():
            return 0  # stopped before uvicorn took over the signals
        if options.workers > 1:
            if grpc_server is not None:
                loading = _Loading(app, lambda failure: _failed(failure, stop))
                loading.start()
            return _run_uvicorn_workers(options, app, stop)
        failed: list[str] = []

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.started and loading is not None:
                    loading.start()  # the port is bound: now load

        def exit_server() -> None:
            server.should_exit = True

        loading = _Loading(app, _when_loaded(options, app, failed, exit_server))
        inner = asgi(app, inline=_inline(app))
        wrapped = _ASGIWhileLoading(app, inner, loading, load_on_startup=False)
        server = Server(uvicorn.Config(wrapped, **_uvicorn_options(options)))
        try:
            server.run()
        except SystemExit as exc:
            # uvicorn exits this way when it cannot start (the port is taken); it logged why
            if exc.code:
                return 1
        return 1 if failed or not server.started else 0
    finally:
        _shutdown(app, grpc_server, loading)


def _failed(failure: str | None, stop: _Stop) -> None:
    if failure is not None:
        logger.error("cannot serve: %s", failure)
        stop.failed = True
        os.kill(os.getpid(), signal.SIGTERM)


def _run_uvicorn_workers(options: argparse.Namespace, app: HTTPApp, stop: _Stop) -> int:
    """``--workers N``: uvicorn's supervisor, marking dead workers for the metrics."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        failed = False

        def keep_subprocess_alive(self) -> None:
            watched = list(self.processes)
            super().keep_subprocess_alive()
            for process in watched:
                if process.exitcode is not None:  # it died (and was replaced, or stops us)
                    _mark_dead(process.pid)
                    self.failed = self.failed or process.exitcode == _WORKER_BOOT_ERROR

    os.environ.update({_SPEC_ENV: options.spec, _LOG_LEVEL_ENV: options.log_level})
    config = uvicorn.Config(
        f"{__name__}:_asgi_app", factory=True, workers=options.workers, **_uvicorn_options(options)
    )
    try:
        sock = config.bind_socket()
    except SystemExit:
        return 1  # uvicorn logged why (the port is taken)
    with sock:
        logger.info("%s", _listening(options, app))
        supervisor = Supervisor(config, sockets=[sock])  # it takes the signals from here
        if stop.event.is_set():  # a signal, or the gRPC side's load failed, before that
            supervisor.should_exit.set()
        supervisor.run()
        for process in supervisor.processes:
            _mark_dead(process.pid)
    return 1 if supervisor.failed or stop.failed else 0


def _run_asgi_app(options: argparse.Namespace, app: ASGIApp) -> int:
    """Serve an ASGI app that is not ours, as it is: uvicorn, its own lifespan."""
    import uvicorn

    if options.server != "uvicorn":
        raise UsageError(f"{options.spec} is an ASGI app: serve it with --server uvicorn")
    if options.grpc_port is not None:
        raise UsageError(
            f"{options.spec} is an ASGI app of its own: --grpc-port needs a Service or an HTTPApp"
        )
    stop = _Stop()
    stop.install()
    common = _uvicorn_options(options)
    logger.info(
        "serving the ASGI app %s on http://%s:%d (uvicorn)",
        options.spec,
        _host_for_url(options.host),
        options.port,
    )
    try:
        if options.workers == 1:
            uvicorn.run(app, **common)
        else:
            os.environ.update({_SPEC_ENV: options.spec, _LOG_LEVEL_ENV: options.log_level})
            uvicorn.run(f"{__name__}:_asgi_app", factory=True, workers=options.workers, **common)
    except SystemExit as exc:
        if exc.code:
            return 1
    logger.info("stopped")
    return 0


# -- gunicorn ---------------------------------------------------------------------------


def _run_gunicorn(options: argparse.Namespace, app: HTTPApp) -> int:
    settings = {
        "bind": f"{_host_for_url(options.host)}:{options.port}",
        "workers": options.workers,
        "threads": options.threads or _DEFAULT_THREADS,
        "loglevel": options.log_level,
        "accesslog": "-" if options.access_log else None,
        "keepalive": max(1, round(options.keep_alive_timeout)),  # gunicorn takes whole seconds
        "worker_connections": options.max_connections,
    }
    from ..servers import MAX_BODY_SIZE_ENV

    env = {
        **os.environ,
        # the worker reads whole bodies up to the app's limit before a thread gets them
        MAX_BODY_SIZE_ENV: str(app.max_body_size),
        _SPEC_ENV: options.spec,
        _LOG_LEVEL_ENV: options.log_level,
        _GUNICORN_ENV: json.dumps(settings),
        _LISTENING_ENV: _listening(options, app),
    }
    stop = _Stop()
    stop.install()
    grpc_server = None
    loading: _Loading | None = None
    code = 1
    try:
        grpc_server = _start_grpc(options, app)
        if grpc_server is not None:
            loading = _Loading(app, lambda failure: _failed(failure, stop))
            loading.start()
        # a child process: the gunicorn master forks workers, and a service
        # (threads) must never be started in a process that forks
        child = subprocess.Popen(  # noqa: S603  # our interpreter, our code; SPEC is in env
            [sys.executable, "-c", f"from {__name__} import _gunicorn_main; _gunicorn_main()"],
            env=env,
        )

        def forward(signum: int) -> None:
            # SIGTERM is gunicorn's graceful stop, whichever signal we got
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

        stop.forward = forward
        if stop.event.is_set():
            forward(signal.SIGTERM)
        code = child.wait()
    finally:
        _shutdown(app, grpc_server, loading)
    if code != 0:
        logger.error("gunicorn exited with status %d", code)
        return 1
    return 1 if stop.failed else 0


def _gunicorn_main() -> None:
    """The gunicorn master process :func:`_run_gunicorn` starts."""
    from gunicorn.app.base import BaseApplication

    configure_logging(os.environ.get(_LOG_LEVEL_ENV, "info"))
    settings: dict[str, Any] = json.loads(os.environ[_GUNICORN_ENV])
    spec = os.environ[_SPEC_ENV]
    loaded: list[tuple[HTTPApp, _Loading]] = []

    def when_ready(server: Any) -> None:
        # in the master, once its socket is bound
        logger.info("%s", os.environ[_LISTENING_ENV])

    def worker_exit(server: Any, worker: Any) -> None:
        for app, loading in loaded:
            _close(app, loading)

    def child_exit(server: Any, worker: Any) -> None:
        _mark_dead(worker.pid)

    class Application(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
        def load_config(self) -> None:
            options = {
                **settings,
                # gthread reading whole requests on its poller: slow clients hold no thread
                "worker_class": "modeldeploy.servers.gunicorn.ThreadWorker",
                "graceful_timeout": int(_GRACE_S),
                "proc_name": "modeldeploy",
                "when_ready": when_ready,
                "worker_exit": worker_exit,
                "child_exit": child_exit,
                # gunicorn >= 23 opens $HOME/.gunicorn/gunicorn.ctl, shared by every instance
                "control_socket_disable": True,
            }
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            # runs in each worker after the fork: its own import of SPEC, its own
            # threads; the model loads on a thread while the worker answers health
            from ..adapters.wsgi import wsgi

            app = resolve(spec)
            loading = _Loading(app, _exit_worker)
            loading.start()
            loaded.append((app, loading))
            return _WSGIWhileLoading(app, wsgi(app), loading, wait=True)

    Application().run()


# -- wsgiref -----------------------------------------------------------------------------


def _run_wsgiref(options: argparse.Namespace, app: HTTPApp) -> int:
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from ..adapters.wsgi import wsgi

    access_log = options.access_log

    class Handler(WSGIRequestHandler):
        timeout = options.header_timeout  # per read: a stalled client gets 408, then close

        def log_message(self, format: str, *args: Any) -> None:  # the stdlib's parameter name
            if access_log:
                logger.info("%s - %s", self.address_string(), format % args)

    class Server(WSGIServer):
        address_family = _address_family(options.host)

    stop = _Stop()
    stop.install()
    grpc_server = None
    failed: list[str] = []

    loading = _Loading(app, _when_loaded(options, app, failed, stop.event.set))
    try:
        try:
            httpd = make_server(
                options.host,
                options.port,
                _WSGIWhileLoading(app, wsgi(app), loading, wait=False),
                server_class=Server,
                handler_class=Handler,
            )
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", options.host, options.port, exc)
            return 1
        with httpd:
            grpc_server = _start_grpc(options, app)
            loop = threading.Thread(target=httpd.serve_forever, name="wsgiref", daemon=True)
            loop.start()
            loading.start()
            stop.event.wait()
            httpd.shutdown()  # returns once the request being answered is done
            loop.join()
    finally:
        _shutdown(app, grpc_server, loading)
    return 1 if failed else 0


def _address_family(host: str) -> int:
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET
