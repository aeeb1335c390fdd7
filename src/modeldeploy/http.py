"""
The HTTP core every HTTP adapter calls: one request in, one :class:`Response` out.

:class:`HTTPApp` routes a request (method, path, lower-case headers, body) to the
right :class:`~modeldeploy.Service`: the Open Inference Protocol (KServe V2) REST
API, the plain ``/predict`` route with content negotiation, and ``/metrics``. It
knows no web framework; the ASGI, WSGI and Flask adapters only translate their
server's request into this call and write the response back.

Routes:

========  ===========================================  ======================================
method    path                                         answer
========  ===========================================  ======================================
GET       ``/v2/health/live``                          200, or 400 once a service failed
GET       ``/v2/health/ready``                         200 when every service is ready, else 400
GET       ``/v2``                                      server metadata
GET       ``/v2/models/{name}[/versions/{v}]``         model metadata
GET       ``/v2/models/{name}[/versions/{v}]/ready``   200 or 400
POST      ``/v2/models/{name}[/versions/{v}]/infer``   V2 inference, JSON and binary tensors
POST      ``/predict``                                 :meth:`Service.handle` (one service only)
POST      ``/models/{name}/predict``                   :meth:`Service.handle`
GET       ``/metrics``                                 Prometheus or OpenMetrics exposition
========  ===========================================  ======================================
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ._version import __version__
from .codecs import Codec, error_response
from .errors import (
    ModelDeployError,
    ModelNotFoundError,
    PayloadTooLargeError,
    ServiceError,
    ValidationError,
    VersionNotFoundError,
)
from .messages import Request, Response, make_request
from .service import TIMEOUT_HEADER, Service, State

if TYPE_CHECKING:
    pass

__all__ = ["TIMEOUT_HEADER", "HTTPApp"]

logger = logging.getLogger("modeldeploy")

_JSON: Final = "application/json"
_JSON_HEADERS: Final[Mapping[str, str]] = MappingProxyType({"content-type": _JSON})
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})
_LIVE_OK: Final = Response(200, _NO_HEADERS, b"")
# the protocol: "a 200 status code indicates true and a 4xx status code indicates false"
_FALSE: Final = Response(400, _NO_HEADERS, b"")
_INTERNAL_V2: Final = Response(500, _JSON_HEADERS, b'{"error":"internal error"}')
_INTERNAL_PLAIN: Final = Response(
    500, _JSON_HEADERS, b'{"error":{"code":"internal","message":"internal error"}}'
)
_NOT_FOUND_V2: Final = Response(404, _JSON_HEADERS, b'{"error":"not found"}')
_NOT_FOUND_PLAIN: Final = Response(
    404, _JSON_HEADERS, b'{"error":{"code":"not_found","message":"not found"}}'
)
_V2_PREFIX: Final = "/v2"  # also matches "/v2" itself
_MODELS_V2: Final = "/v2/models/"
_MODELS_PLAIN: Final = "/models/"
_ADMIN_PREFIX: Final = "/admin/models/"  # modeldeploy.admin.ADMIN_PREFIX, without importing it

# route kinds; the fixed paths map straight to one
_LIVE, _READY, _SERVER_META, _METRICS, _PREDICT = range(5)
_MODEL_META, _MODEL_READY, _INFER = range(5, 8)
_OPENAPI: Final = 8
_CALLS_CACHED: Final = 256  # model-call routes remembered (a few per service)
_FIXED: Final[Mapping[str, tuple[str, int]]] = MappingProxyType(
    {
        "/v2/health/live": ("GET", _LIVE),
        "/v2/health/ready": ("GET", _READY),
        "/v2": ("GET", _SERVER_META),
        "/metrics": ("GET", _METRICS),
        "/predict": ("POST", _PREDICT),
        "/openapi.json": ("GET", _OPENAPI),
    }
)
# /v2/models/{name}/<tail>, /v2/models/{name}/versions/{v}/<tail>
_MODEL_TAILS: Final[Mapping[str, tuple[str, int]]] = MappingProxyType(
    {"": ("GET", _MODEL_META), "ready": ("GET", _MODEL_READY), "infer": ("POST", _INFER)}
)

# a route resolved to a model call: (the protocol's codec, None for /predict; the service;
# the version the route names, None for the live one)
_Call = tuple["Codec | None", Service, "str | None"]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _V2UnavailableError(ServiceError):
    """The V2 routes need NumPy, and it is not installed."""

    code, http_status, grpc_status = "not_implemented", 501, "UNIMPLEMENTED"


def _v2_error_response(error: ModelDeployError) -> Response:
    # the V2 protocol's error body, {"error": message}, without importing the codec
    status = 400 if isinstance(error, ValidationError) else error.http_status
    extra = error.headers()
    headers = {"content-type": _JSON, **extra} if extra else _JSON_HEADERS
    return Response(status, headers, _dumps({"error": error.message}))


def _not_allowed(allowed: str, v2_route: bool) -> Response:
    body = (
        b'{"error":"method not allowed"}'
        if v2_route
        else b'{"error":{"code":"method_not_allowed","message":"method not allowed"}}'
    )
    # every GET route answers HEAD too
    allow = "GET, HEAD" if allowed == "GET" else allowed
    return Response(405, {"content-type": _JSON, "allow": allow}, body)


class HTTPApp:
    """
    Routes one HTTP request to the right :class:`~modeldeploy.Service`.

    Every framework adapter calls an instance: the ASGI and WSGI apps of
    :mod:`modeldeploy.adapters`, the Flask blueprint, a handler of your own.
    It never raises: every failure becomes a JSON error response, and an
    unexpected exception a 500 with no detail (it is logged).

    Args:
        services: The service, or services, to serve; names must differ.
        registry: The Prometheus registry ``/metrics`` exposes. Defaults to
            ``prometheus_client.REGISTRY``, or, when ``PROMETHEUS_MULTIPROC_DIR``
            is set (several worker processes), a fresh registry with a
            ``MultiProcessCollector`` per scrape.
        max_body_size: Largest request body in bytes; adapters refuse a larger
            one with 413 before reading it. Defaults to the largest
            ``max_body_size`` of the services.
        admin_token: Turns on the admin routes (:mod:`modeldeploy.admin`:
            deploy, roll back, promote over HTTP) behind this bearer token.
            ``None``, the default, serves none of them.
        stores: Model name to the model store the admin ``deploy`` route
            loads its versions from.

    Attributes:
        services: Service name to service.
        max_body_size: The body limit adapters enforce.

    Raises:
        ValueError: No service, or two with the same name.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        services: Service | Iterable[Service],
        *,
        registry: CollectorRegistry | None = None,
        max_body_size: int | None = None,
        admin_token: str | None = None,
        stores: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(services, Service):
            services = [services]
        self.services: dict[str, Service] = {}
        for service in services:
            if service.name in self.services:
                raise ValueError(f"two services are named {service.name!r}")
            self.services[service.name] = service
        if not self.services:
            raise ValueError("HTTPApp needs at least one service")
        if max_body_size is None:
            max_body_size = max(s.max_body_size for s in self.services.values())
        elif max_body_size < 0:
            raise ValueError(f"max_body_size must be >= 0, got {max_body_size}")
        self.max_body_size: int = max_body_size
        self._registry = registry
        self._multiprocess = registry is None and bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # /predict is unambiguous only with one service
        self._single = next(iter(self.services.values())) if len(self.services) == 1 else None
        self._v2 = _import_v2()
        extensions = self._v2.EXTENSIONS if self._v2 is not None else ()
        metadata = {"name": "modeldeploy", "version": __version__, "extensions": list(extensions)}
        self._server_metadata = Response(200, _JSON_HEADERS, _dumps(metadata))
        self._rest_codec: Codec | None = self._v2.RestCodec() if self._v2 is not None else None
        # the model calls resolved so far by (method, path), so that a request to one
        # costs a dict lookup, not the routing (adapters read it too): only routes that
        # name no version (a version may be retired), at most _CALLS_CACHED of them
        self._calls: dict[tuple[str, str], tuple[Codec | None, Service]] = {}
        self._unstarted = True
        self._start_lock = threading.Lock()
        _warn_if_trusted_pickle(self.services.values())
        self._admin: Callable[..., Response] | None = None
        if admin_token is not None:
            from .admin import Admin

            self._admin = Admin(self.services, admin_token, stores)

    def __repr__(self) -> str:
        return f"HTTPApp(services={list(self.services)!r})"

    # -- the two entry points ------------------------------------------------------

    def __call__(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | memoryview,
        query: str = "",
    ) -> Response:
        """
        Answer one request on this thread; never raises.

        Args:
            method: The HTTP method, upper case.
            path: The URL path, percent-decoded, without the query string.
            headers: Request headers with lower-case names.
            body: The request body.
            query: The raw query string (no route reads it yet).

        Returns:
            The response to write; header names may be in any case.

        .. versionadded:: 0.1.0
        """
        try:  # acall's twin, not a shared helper: that cost +75 ns a cached route (timeit)
            call = self._calls.get((method, path))
            if call is not None and _size(body) <= self.max_body_size:
                codec, service = call
                return service.handle(_request(headers, body), codec)
            resolved = self._resolve(method, path, headers, body)
            if type(resolved) is Response:
                return resolved
            codec, service, version = resolved  # type: ignore[misc]
            if version is None:
                self._remember(method, path, codec, service)
            return service.handle(_request(headers, body, version), codec)
        except ModelDeployError as exc:
            return self.error(path, exc)
        except Exception:
            return self._internal(method, path)

    async def acall(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | memoryview,
        query: str = "",
    ) -> Response:
        """
        Answer one request from a coroutine; the model never runs on the event loop.

        Takes the arguments of :meth:`__call__`. Predictions go through
        :meth:`Service.apredict` and :meth:`Service.ahandle`, so a slow model
        blocks no other request; decoding and encoding run on the loop.

        .. versionadded:: 0.1.0
        """
        try:
            call = self._calls.get((method, path))
            if call is not None and _size(body) <= self.max_body_size:
                codec, service = call
                return await service.ahandle(_request(headers, body), codec)
            resolved = self._resolve(method, path, headers, body)
            if type(resolved) is Response:
                return resolved
            codec, service, version = resolved  # type: ignore[misc]
            if version is None:
                self._remember(method, path, codec, service)
            return await service.ahandle(_request(headers, body, version), codec)
        except ModelDeployError as exc:
            return self.error(path, exc)
        except Exception:
            return self._internal(method, path)

    def error(self, path: str, error: ModelDeployError) -> Response:
        """
        Return the error response a request to *path* gets for *error*.

        For adapters that refuse a request before calling the app (a body
        over :attr:`max_body_size` is refused before it is read): V2 routes
        answer ``{"error": message}``, the others ``{"error": {"code", "message"}}``.

        Args:
            path: The request's path; it picks the error body's form.
            error: The error to answer with.

        .. versionadded:: 0.1.0
        """
        return _v2_error_response(error) if path.startswith(_V2_PREFIX) else error_response(error)

    def start_services(self) -> str | None:
        """
        Start every service not started yet; only the first call does anything.

        Adapters call it on their first request, in the worker process that
        serves it (worker threads do not survive ``fork()``), or on startup.
        A call made while the first still runs waits for it, so a request that
        comes in during the start is answered once the model is ready, not
        refused; later calls start nothing, and they and the waiters return
        None. A service that fails to start is logged, not raised: it is then
        failed, its routes answer 503 and health says so. So is a service
        found already closed or failed (a module-level ``with service:`` block
        closes it at import): it can never answer, and the first failure is
        returned so that an ASGI server's startup fails with that line.

        Returns:
            The first failure's message, or None.

        .. versionadded:: 0.1.0
        """
        if not self._unstarted:
            return None
        failure = None
        with self._start_lock:
            if not self._unstarted:
                return None
            try:
                for service in self.services.values():
                    if service.state is State.NEW:
                        try:
                            service.start()
                        except Exception as exc:
                            logger.exception("starting model %s failed", service.name)
                            failure = failure or str(exc)
                    elif (refused := cannot_serve(service)) is not None:
                        logger.error("%s", refused)
                        failure = failure or refused
            finally:
                # only now: until the services are up, callers must wait on the lock
                self._unstarted = False
        return failure

    # -- routing -----------------------------------------------------------------------

    def _remember(self, method: str, path: str, codec: Codec | None, service: Service) -> None:
        """Keep a model call's route for the next request to the same path."""
        if len(self._calls) < _CALLS_CACHED:
            self._calls[method, path] = (codec, service)

    def _resolve(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | memoryview
    ) -> Response | _Call:
        """Answer every route but the model calls, which come back as ``(infer, service)``."""
        if method == "HEAD":  # a GET whose body the adapter leaves out (RFC 9110)
            method = "GET"
        size = _size(body)
        if size > self.max_body_size:
            raise PayloadTooLargeError(
                f"body of {size} bytes is over the limit of {self.max_body_size}"
            )
        fixed = _FIXED.get(path)
        if fixed is not None:
            allowed, kind = fixed
            if method != allowed:
                return _not_allowed(allowed, path.startswith(_V2_PREFIX))
            if kind == _PREDICT:
                if self._single is None:
                    names = ", ".join(repr(name) for name in self.services)
                    raise ModelNotFoundError(
                        f"/predict serves a lone model; this server has {names}: "
                        "POST /models/{name}/predict"
                    )
                return None, self._single, None
            if kind == _LIVE:
                return _LIVE_OK if all(s.health() for s in self.services.values()) else _FALSE
            if kind == _READY:
                return _LIVE_OK if all(s.ready() for s in self.services.values()) else _FALSE
            if kind == _SERVER_META:
                return self._server_metadata
            if kind == _OPENAPI:
                from .openapi import document

                return Response(200, _JSON_HEADERS, _dumps(document(self.services.values())))
            return self._metrics(headers)
        if path.startswith(_MODELS_V2):
            return self._resolve_v2_model(method, path[len(_MODELS_V2) :])
        if path.startswith(_MODELS_PLAIN):
            name, sep, tail = path[len(_MODELS_PLAIN) :].partition("/")
            if not (name and sep and tail == "predict"):
                return _NOT_FOUND_PLAIN
            if method != "POST":
                return _not_allowed("POST", False)
            return None, self._service(name, None), None
        if self._admin is not None and path.startswith(_ADMIN_PREFIX):
            return self._admin(method, path, headers, body)
        return _NOT_FOUND_V2 if path.startswith(_V2_PREFIX) else _NOT_FOUND_PLAIN

    def _resolve_v2_model(self, method: str, rest: str) -> Response | _Call:
        parts = rest.split("/")
        count = len(parts)
        version = None
        if count == 1:
            tail = ""
        elif count == 2:
            tail = parts[1]
        elif count in (3, 4) and parts[1] == "versions" and parts[2]:
            version = parts[2]
            tail = parts[3] if count == 4 else ""
        else:
            return _NOT_FOUND_V2
        route = _MODEL_TAILS.get(tail)
        if route is None or not parts[0] or (count == 2 and not tail):
            return _NOT_FOUND_V2
        allowed, kind = route
        if method != allowed:
            return _not_allowed(allowed, True)
        service = self._service(parts[0], version)
        if kind == _MODEL_READY:
            return _LIVE_OK if service.ready() else _FALSE
        v2 = self._v2
        if v2 is None:
            raise _V2UnavailableError(_NO_NUMPY)
        if kind == _INFER:
            return self._rest_codec, service, version
        body = v2.model_metadata(service.name, service.signature, versions=list(service.versions))
        return Response(200, _JSON_HEADERS, v2.dumps_json(body))

    def _service(self, name: str, version: str | None) -> Service:
        service = self.services.get(name)
        if service is None:
            raise ModelNotFoundError(f"no model named {name!r}")
        if version is not None and version not in service.versions:
            raise VersionNotFoundError(f"model {name!r} has no version {version!r}")
        return service

    # -- routes ------------------------------------------------------------------------

    def _metrics(self, headers: Mapping[str, str]) -> Response:
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        registry = self._registry
        if registry is None:
            registry = _multiprocess_registry() if self._multiprocess else REGISTRY
        return Response(200, {"content-type": content_type}, encoder(registry))

    def _internal(self, method: str, path: str) -> Response:
        logger.exception("unexpected error answering %s %r", method, path)
        return _INTERNAL_V2 if path.startswith(_V2_PREFIX) else _INTERNAL_PLAIN


_NO_NUMPY: Final = "the V2 routes need numpy: pip install 'modeldeploy[numpy]'"


def _import_v2() -> ModuleType | None:
    """The V2 codec module, or None (logged once per app) where numpy is missing."""
    try:
        return importlib.import_module("modeldeploy.v2")
    except ModuleNotFoundError as exc:
        if exc.name != "numpy":
            raise
        logger.warning("%s; /predict and /metrics work without it", _NO_NUMPY)
        return None


def _warn_if_trusted_pickle(services: Iterable[Service]) -> None:
    # an HTTP app is a network service: a trusted Pickle there runs any client's code
    if "modeldeploy.serializers.pickle" in sys.modules:  # no Pickle was made otherwise
        from .serializers.pickle import warn_if_trusted

        for service in services:
            warn_if_trusted(service.negotiator.serializers, f"model {service.name!r}")


def cannot_serve(service: Service) -> str | None:
    """Why *service* can never answer (closed, or failed to start), as one line; else None."""
    state = service.state
    if state in (State.CLOSING, State.CLOSED):
        return (
            f"model {service.name!r} is {state.value} and cannot be served: a `with service:`"
            " block closes it when the block ends; let the server start it (in a script,"
            " put the block under `if __name__ == '__main__':`)"
        )
    if state is State.FAILED:
        return f"model {service.name!r} failed to start before it was served (see the log)"
    return None


def _size(body: bytes | memoryview) -> int:
    return body.nbytes if type(body) is memoryview else len(body)


def _request(
    headers: Mapping[str, str], body: bytes | memoryview, version: str | None = None
) -> Request:
    # the deadline header is read on the service's path, where its error is observed
    content_type = headers.get("content-type") or _JSON
    accept = headers.get("accept") or "*/*"
    if version is None:
        return make_request(body, content_type, accept, headers)
    return Request(body, content_type, accept, headers, version=version)


def _multiprocess_registry() -> CollectorRegistry:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
