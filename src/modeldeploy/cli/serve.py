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
import functools
import importlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from ..errors import ModelDeployError, ModelLoadError, ModelNotFoundError
from ..http import HTTPApp
from ..interfaces import Predictor
from ..monitors import PrometheusMonitor
from ..predictors import predictor
from ..service import Service, State
from ._args import Commands, UsageError, configure_logging, port, positive

if TYPE_CHECKING:
    import grpc

    from ..adapters.asgi import ASGIApp

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

# how a parent hands its configuration to the server processes it starts
_SPEC_ENV: Final = "MODELDEPLOY_SPEC"
_LOG_LEVEL_ENV: Final = "MODELDEPLOY_LOG_LEVEL"
_GUNICORN_ENV: Final = "MODELDEPLOY_GUNICORN"
_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

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


# How SPEC is read, in order: each loader returns the object SPEC names, or None
# when SPEC is not its form. The model store adds a loader for store paths here.
_LOADERS: Final[list[Callable[[str], object | None]]] = [_import_spec]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def as_app(target: object, spec: str = "the target") -> HTTPApp:
    """
    Wrap what a SPEC names into the :class:`~modeldeploy.http.HTTPApp` to serve.

    An HTTPApp is served as it is; a :class:`~modeldeploy.Service` alone; a
    :class:`~modeldeploy.Predictor` or a plain callable (the model itself) in a
    new Service with a :class:`~modeldeploy.PrometheusMonitor` on the default
    registry.

    Args:
        target: The object.
        spec: How the object was named, for error messages.

    Raises:
        ModelLoadError: *target* is none of these, or a class.

    .. versionadded:: 0.1.0
    """
    if isinstance(target, HTTPApp):
        return target
    if isinstance(target, Service):
        return HTTPApp(target)
    if isinstance(target, type):
        raise ModelLoadError(
            f"{spec} is the class {target.__name__}; name an instance "
            "(a Service, a Predictor, an HTTPApp or a callable)"
        )
    if isinstance(target, Predictor):
        return HTTPApp(Service(target, monitors=[PrometheusMonitor()]))
    if callable(target):
        return HTTPApp(Service(predictor(target), monitors=[PrometheusMonitor()]))
    raise ModelLoadError(
        f"{spec} is of type {type(target).__name__}; expected a Service, a Predictor, "
        "an HTTPApp or a callable"
    )


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
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # `modeldeploy serve myapp:service` finds myapp.py where it runs, as uvicorn does
        sys.path.insert(0, cwd)
    for load in _LOADERS:
        target = load(spec)
        if target is not None:
            return as_app(target, repr(spec))
    raise ModelNotFoundError(
        f"cannot read SPEC {spec!r}: expected package.module:attribute "
        "(for example modeldeploy.demo:service)"
    )


# -- the command line ---------------------------------------------------------------


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
            "SPEC is package.module:attribute naming a Service, a Predictor, an HTTPApp "
            "or a plain callable (the model; it is wrapped in a Service with a "
            "PrometheusMonitor). The current directory is on the import path. "
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
    serve.set_defaults(run=_serve)


# -- connections: read timeouts, keep-alive, limits (docs/reliability.md) ----------

_DEFAULT_KEEP_ALIVE_S: Final = 5.0
_DEFAULT_MAX_CONNECTIONS: Final = 1000


def _add_connection_options(serve: argparse.ArgumentParser) -> None:
    from ..servers import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT

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
    """Hand the read timeouts to every server process through the environment."""
    from ..servers import BODY_TIMEOUT_ENV, HEADER_TIMEOUT_ENV

    os.environ[HEADER_TIMEOUT_ENV] = repr(options.header_timeout)
    os.environ[BODY_TIMEOUT_ENV] = repr(options.body_timeout)


def _serve(options: argparse.Namespace) -> int:
    if options.threads is not None and options.server != "gunicorn":
        raise UsageError("--threads applies to --server gunicorn only")
    if options.server == "wsgiref" and options.workers != 1:
        raise UsageError("wsgiref runs one process: drop --workers or pick another --server")
    if options.grpc_port is not None and options.grpc_port == options.port:
        raise UsageError("--grpc-port must differ from --port")
    if options.server != "wsgiref":
        _require(f"--server {options.server}", options.server)
    if options.grpc_port is not None:
        _require("--grpc-port", "grpc")
    configure_logging(options.log_level)
    _connection_settings(options)
    try:
        app = resolve(options.spec)
    except ModelDeployError as exc:
        raise UsageError(exc.message) from exc
    runner = {"uvicorn": _run_uvicorn, "gunicorn": _run_gunicorn, "wsgiref": _run_wsgiref}
    return runner[options.server](options, app)


def _require(what: str, module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        install = {
            "uvicorn": "modeldeploy[asgi]",
            "grpc": "modeldeploy[grpc]",
            "gunicorn": "gunicorn",
        }[module]
        raise UsageError(f"{what} needs {module}: pip install {install!r}") from None


def _listening(options: argparse.Namespace, app: HTTPApp) -> None:
    models = ", ".join(f"{s.name!r} version {s.version!r}" for s in app.services.values())
    noun = "model" if len(app.services) == 1 else "models"
    processes = f"{options.workers} process{'es' if options.workers > 1 else ''}"
    if options.server == "gunicorn":
        processes += f", {options.threads or _DEFAULT_THREADS} threads each"
    logger.info(
        "serving %s %s on http://%s:%d (%s, %s); metrics on /metrics",
        noun,
        models,
        _host_for_url(options.host),
        options.port,
        options.server,
        processes,
    )


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# -- signals and the gRPC server beside HTTP ---------------------------------------


class _Stop:
    """SIGTERM and SIGINT handlers that set an event instead of killing the process."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.forward: Callable[[int], None] | None = None

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
    if options.grpc_port is None:
        return None
    from ..adapters.grpc import server

    for service in app.services.values():
        if service.state is State.NEW:
            service.start()
    address = f"{_host_for_url(options.host)}:{options.grpc_port}"
    try:
        grpc_server, _ = server(app, address)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from exc
    grpc_server.start()
    where = "this process" if options.workers == 1 else "the supervising process"
    logger.info("serving gRPC (V2 GRPCInferenceService) on %s, in %s", address, where)
    return grpc_server


def _shutdown(app: HTTPApp, grpc_server: grpc.Server | None) -> None:
    if grpc_server is not None:
        grpc_server.stop(grace=_GRACE_S).wait()
    for service in app.services.values():
        service.close(timeout=_GRACE_S)
    logger.info("stopped")


class _MultiprocessDir:
    """A temporary PROMETHEUS_MULTIPROC_DIR for several processes, unless one is set."""

    def __init__(self, processes: int) -> None:
        self.path: str | None = None
        if processes > 1 and not os.environ.get(_MULTIPROC_ENV):
            self.path = tempfile.mkdtemp(prefix="modeldeploy-metrics-")

    def env(self) -> dict[str, str]:
        return {_MULTIPROC_ENV: self.path} if self.path is not None else {}

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


# -- uvicorn ---------------------------------------------------------------------------


def _asgi_app() -> ASGIApp:
    """
    The ASGI application of each uvicorn worker process, built from ``SPEC``.

    ``modeldeploy serve --workers N`` runs uvicorn with this factory: uvicorn
    spawns fresh processes, which import ``SPEC`` (from the environment)
    themselves.
    """
    from ..adapters.asgi import asgi

    configure_logging(os.environ.get(_LOG_LEVEL_ENV, "info"))
    return asgi(resolve(os.environ[_SPEC_ENV]))


def _run_uvicorn(options: argparse.Namespace, app: HTTPApp) -> int:
    import uvicorn

    from ..adapters.asgi import asgi
    from ..servers.uvicorn import protocol as uvicorn_protocol

    stop = _Stop()
    # uvicorn re-raises the signal it stopped on once it is done; these
    # handlers take it, so the process exits 0 instead of dying by SIGTERM
    stop.install()
    metrics_dir = _MultiprocessDir(options.workers)
    grpc_server = None
    try:
        grpc_server = _start_grpc(options, app)
        if stop.event.is_set():
            return 0  # stopped before uvicorn took over the signals
        _listening(options, app)
        common: dict[str, Any] = {
            "host": options.host,
            "port": options.port,
            "log_level": options.log_level,
            "access_log": options.access_log,
            "lifespan": "on",
            "timeout_graceful_shutdown": int(_GRACE_S),
            # read deadlines, idle keep-alive and a connection limit (docs/reliability.md)
            "http": uvicorn_protocol(),
            "timeout_keep_alive": options.keep_alive_timeout,
            "limit_concurrency": options.max_connections,
        }
        try:
            if options.workers == 1:
                uvicorn.run(asgi(app), **common)
            else:
                os.environ.update(
                    {
                        _SPEC_ENV: options.spec,
                        _LOG_LEVEL_ENV: options.log_level,
                        **metrics_dir.env(),
                    }
                )
                uvicorn.run(
                    f"{__name__}:_asgi_app", factory=True, workers=options.workers, **common
                )
        except SystemExit as exc:
            # uvicorn exits this way when it cannot start (the port is taken); it logged why
            if exc.code:
                return 1
    finally:
        _shutdown(app, grpc_server)
        metrics_dir.remove()
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
    metrics_dir = _MultiprocessDir(options.workers)
    env = {
        **os.environ,
        _SPEC_ENV: options.spec,
        _LOG_LEVEL_ENV: options.log_level,
        _GUNICORN_ENV: json.dumps(settings),
        **metrics_dir.env(),
    }
    stop = _Stop()
    stop.install()
    grpc_server = None
    try:
        grpc_server = _start_grpc(options, app)
        _listening(options, app)
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
        _shutdown(app, grpc_server)
        metrics_dir.remove()
    if code != 0:
        logger.error("gunicorn exited with status %d", code)
        return 1
    return 0


def _gunicorn_main() -> None:
    """The gunicorn master process :func:`_run_gunicorn` starts."""
    from gunicorn.app.base import BaseApplication

    settings: dict[str, Any] = json.loads(os.environ[_GUNICORN_ENV])
    spec = os.environ[_SPEC_ENV]
    loaded: list[HTTPApp] = []

    def worker_exit(server: Any, worker: Any) -> None:
        for app in loaded:
            for service in app.services.values():
                service.close(timeout=_GRACE_S)

    def child_exit(server: Any, worker: Any) -> None:
        if os.environ.get(_MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    class Application(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
        def load_config(self) -> None:
            options = {
                **settings,
                # gthread with read deadlines: one slow client cannot hold a thread
                "worker_class": "modeldeploy.servers.gunicorn.ThreadWorker",
                "graceful_timeout": int(_GRACE_S),
                "proc_name": "modeldeploy",
                "worker_exit": worker_exit,
                "child_exit": child_exit,
                # gunicorn >= 23 opens $HOME/.gunicorn/gunicorn.ctl, shared by every instance
                "control_socket_disable": True,
            }
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            # runs in each worker after the fork: its own import of SPEC, its own threads
            from ..adapters.wsgi import wsgi

            configure_logging(os.environ.get(_LOG_LEVEL_ENV, "info"))
            app = resolve(spec)
            for service in app.services.values():
                if service.state is State.NEW:
                    service.start()
            loaded.append(app)
            return wsgi(app)

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
    try:
        for service in app.services.values():
            if service.state is State.NEW:
                service.start()
        try:
            httpd = make_server(
                options.host, options.port, wsgi(app), server_class=Server, handler_class=Handler
            )
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", options.host, options.port, exc)
            return 1
        with httpd:
            grpc_server = _start_grpc(options, app)
            loop = threading.Thread(target=httpd.serve_forever, name="wsgiref", daemon=True)
            loop.start()
            _listening(options, app)
            stop.event.wait()
            httpd.shutdown()  # returns once the request being answered is done
            loop.join()
    finally:
        _shutdown(app, grpc_server)
    return 0


def _address_family(host: str) -> int:
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET
