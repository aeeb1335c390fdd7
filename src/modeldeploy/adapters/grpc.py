"""
The Open Inference Protocol (KServe V2) over gRPC.

:func:`servicer` answers the six unary RPCs of ``inference.GRPCInferenceService``
for one or several services, each reached by its name; :func:`server` builds a
``grpc.Server`` with that servicer and a message size limit taken from the
services. Translation only: ``ModelInfer`` hands the message to
:meth:`Service.handle <modeldeploy.Service.handle>` with the V2 gRPC codec
(:class:`modeldeploy.v2.GrpcCodec`), the one path every request takes, so a gRPC
request is limited, timed, observed and refused exactly as an HTTP one is.

A :class:`~modeldeploy.ModelDeployError` ends the RPC with the status named by its
``grpc_status`` and its client-safe message; any other exception ends it with
``INTERNAL`` and ``"internal error"`` (and is logged). A traceback never leaves the
process.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from typing import Any, Final, NoReturn, TypeVar

import attrs

from modeldeploy._extras import needs

with needs("modeldeploy.adapters.grpc"):
    import grpc

    from modeldeploy import v2
from modeldeploy._proto.inference import grpc_service_pb2 as pb
from modeldeploy._proto.inference import grpc_service_pb2_grpc as pb_grpc
from modeldeploy.errors import (
    DeadlineExceededError,
    ModelDeployError,
    ModelNotFoundError,
    PayloadTooLargeError,
    VersionNotFoundError,
)
from modeldeploy.http import HTTPApp
from modeldeploy.messages import Request, Response
from modeldeploy.service import Service

__all__ = ["server", "servicer"]

logger = logging.getLogger("modeldeploy")

_INT32_MAX = 2**31 - 1  # grpc channel options are C ints
_MAX_NAME_IN_MESSAGE = 100

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _services_by_name(target: Service | Iterable[Service] | HTTPApp) -> dict[str, Service]:
    if isinstance(target, HTTPApp):
        return dict(target.services)
    services = [target] if isinstance(target, Service) else list(target)
    if not services:
        raise ValueError("serve at least one Service")
    by_name: dict[str, Service] = {}
    for service in services:
        if not isinstance(service, Service):
            raise TypeError(f"expected a Service, got {type(service).__name__}")
        if service.name in by_name:
            raise ValueError(f"two services are named {service.name!r}")
        by_name[service.name] = service
    return by_name


def _quoted(name: str) -> str:
    # the name came from the client: echo it, but not a megabyte of it
    if len(name) > _MAX_NAME_IN_MESSAGE:
        name = name[:_MAX_NAME_IN_MESSAGE] + "..."
    return repr(name)


def _abort(context: grpc.ServicerContext, error: ModelDeployError) -> NoReturn:
    headers = error.headers()
    if headers:
        # Retry-After and the like travel as trailing metadata (lower-case keys)
        context.set_trailing_metadata(tuple((k.lower(), v) for k, v in headers.items()))
    context.abort(grpc.StatusCode[error.grpc_status], error.message)
    raise AssertionError("context.abort() returned")  # pragma: no cover - it raises


class _RefusedError(Exception):
    """The service answered a call with an error response (the codec's grpc-status)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _rpc(method: _Method) -> _Method:
    """End the RPC with the error's status on failure; never send a traceback."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except _RefusedError as exc:
            refused: Response | ModelDeployError = exc.response
        except ModelDeployError as exc:
            refused = exc
        except Exception:
            logger.exception("unexpected error in gRPC %s", method.__name__)
            refused = ModelDeployError("internal error")
        # outside the try: abort() raises, and that exception is grpc's to handle
        if isinstance(refused, Response):
            _abort_with(context, refused)
        _abort(context, refused)

    return wrapper  # type: ignore[return-value]


class _Servicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]  # generated, untyped
    """The V2 ``GRPCInferenceService`` over a fixed set of services, by name."""

    def __init__(self, services: Mapping[str, Service], max_size: int | None = None) -> None:
        self.services: Mapping[str, Service] = dict(services)
        # per model: its own max_body_size, capped by the HTTPApp's when one was given
        self.limits: Mapping[str, int] = {
            name: s.max_body_size if max_size is None else min(s.max_body_size, max_size)
            for name, s in self.services.items()
        }
        self._server_metadata = v2.server_metadata_to_grpc(v2.server_metadata())
        self._codec = v2.GrpcCodec()

    def _service(self, name: str, version: str = "") -> Service:
        service = self.services.get(name)
        if service is None:
            raise ModelNotFoundError(f"no model named {_quoted(name)}")
        if version and version not in service.versions:
            raise VersionNotFoundError(f"model {_quoted(name)} has no version {_quoted(version)}")
        return service

    @_rpc
    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Live while no service has failed to load or been closed."""
        return pb.ServerLiveResponse(live=all(s.health() for s in self.services.values()))

    @_rpc
    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Ready when every service is ready."""
        return pb.ServerReadyResponse(ready=all(s.ready() for s in self.services.values()))

    @_rpc
    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Whether one model (and version, when given) is ready; NOT_FOUND if unknown."""
        service = self._service(request.name, request.version)
        return pb.ModelReadyResponse(ready=service.ready())

    @_rpc
    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The server's name, version and protocol extensions."""
        return self._server_metadata

    @_rpc
    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """One model's tensors, from its signature; NOT_FOUND if unknown."""
        service = self._service(request.name, request.version)
        metadata = v2.model_metadata(
            service.name, service.signature, versions=list(service.versions)
        )
        return v2.model_metadata_to_grpc(metadata)

    @_rpc
    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Predict through the service's one request path, within the call's deadline."""
        # registered by grpc's generated code: grpc parsed the message, and wants one back
        service = self._service(request.model_name, request.model_version)
        size = request.ByteSize()
        limit = self.limits[service.name]
        if size > limit:
            raise PayloadTooLargeError(f"request of {size} bytes is over the limit of {limit}")
        version = request.model_version or None
        response = self._infer(
            service, Request(b"", _GRPC, message=request, version=version), context
        )
        return pb.ModelInferResponse.FromString(response)

    @_rpc
    def infer_raw(self, body: bytes, context: grpc.ServicerContext) -> bytes:
        """
        ``ModelInfer`` on the serialized message, answered serialized: no second copy.

        What :func:`server` registers; the message is parsed once, here, to
        find its model, and its size is checked on the service's path.
        """
        message = v2.parse_grpc_request(body)
        service = self._service(message.model_name, message.model_version)
        version = message.model_version or None
        return self._infer(
            service, Request(body, _GRPC, message=message, version=version), context
        )

    def _infer(self, service: Service, request: Request, context: grpc.ServicerContext) -> bytes:
        deadline = _deadline(context)
        if deadline is not None:
            request = attrs.evolve(request, deadline=deadline)
        response = service.handle(request, self._codec)
        if response.status != 200:
            raise _RefusedError(response)
        return response.body


_GRPC = "application/grpc"


def _abort_with(context: grpc.ServicerContext, response: Response) -> NoReturn:
    """End the call with the status and message the codec put in the response's headers."""
    headers = dict(response.headers)
    status = grpc.StatusCode[headers.pop("grpc-status")]
    message = headers.pop("grpc-message")
    headers.pop("x-request-id", None)
    if headers:
        # Retry-After and the like travel as trailing metadata (lower-case keys)
        context.set_trailing_metadata(tuple(headers.items()))
    context.abort(status, message)
    raise AssertionError("context.abort() returned")  # pragma: no cover - it raises


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The call's deadline on the monotonic clock, or None when it has none."""
    remaining: float | None = context.time_remaining()
    # a call without a deadline reports None, or an "infinite" one in the far future
    if remaining is None or remaining >= threading.TIMEOUT_MAX:
        return None
    if remaining <= 0:
        raise DeadlineExceededError("the call's deadline has passed")
    return time.monotonic() + remaining


_RPCS: Final[dict[str, tuple[Any, Any]]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
}


def _register(answer: _Servicer, grpc_server: grpc.Server) -> None:
    """Add *answer* to *grpc_server*, with ``ModelInfer`` taking and giving bytes."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(answer, name),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
        for name, (request_type, response_type) in _RPCS.items()
    }
    # no (de)serializer: the handler gets the request's bytes and returns the response's
    handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(answer.infer_raw)
    service_name = "inference.GRPCInferenceService"
    grpc_server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service_name, handlers),)
    )
    grpc_server.add_registered_method_handlers(service_name, handlers)


def servicer(target: Service | Iterable[Service] | HTTPApp) -> _Servicer:
    """
    Make a V2 ``GRPCInferenceService`` servicer for one service or several.

    Each service answers under its ``name`` (``ModelInferRequest.model_name``);
    a request naming another model fails with ``NOT_FOUND``, and one naming a
    ``model_version`` other than the service's ``version`` too. ``ModelInfer``
    reads typed ``contents`` and ``raw_input_contents``, answers in
    ``raw_output_contents``, honours the requested outputs and echoes the ``id``.
    The prediction's timeout is the call's remaining time
    (``context.time_remaining()``) or the service's ``timeout``, whichever is
    shorter.

    The services are not started here: start them (``with service:``) before
    serving, and close them after.

    Args:
        target: A :class:`~modeldeploy.Service`, several with distinct names,
            or the :class:`~modeldeploy.http.HTTPApp` that serves them over HTTP.

    Returns:
        A ``GRPCInferenceServiceServicer`` to pass to
        ``grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server``.

    Raises:
        ValueError: No service, or two with the same name.

    Example:
        >>> import grpc
        >>> from concurrent import futures
        >>> import modeldeploy as md
        >>> from modeldeploy.adapters.grpc import servicer
        >>> from modeldeploy._proto.inference import grpc_service_pb2_grpc as pb_grpc
        >>> service = md.Service(lambda x: x * 2, name="double")
        >>> grpc_server = grpc.server(futures.ThreadPoolExecutor(4))
        >>> pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer(service), grpc_server)

    .. versionadded:: 0.1.0
    """
    max_size = target.max_body_size if isinstance(target, HTTPApp) else None
    return _Servicer(_services_by_name(target), max_size)


def server(
    target: Service | Iterable[Service] | HTTPApp,
    address: str = "127.0.0.1:0",
    *,
    max_workers: int = 16,
    max_message_length: int | None = None,
    options: Iterable[tuple[str, Any]] = (),
) -> tuple[grpc.Server, int]:
    """
    Build a ``grpc.Server`` that serves *target* on *address*, not yet started.

    The server is returned unstarted so that other servicers (health checking,
    reflection) can join it first; call ``start()``, then ``stop(grace)`` when
    done. The services' life cycle stays the caller's.

    Args:
        target: A :class:`~modeldeploy.Service`, several with distinct names,
            or an :class:`~modeldeploy.http.HTTPApp` (its services).
        address: ``host:port`` to listen on, without TLS; port ``0`` picks a
            free one.
        max_workers: Threads answering RPCs; each waits for its prediction, so
            this bounds the calls in flight.
        max_message_length: Largest request message in bytes; grpc refuses a
            larger one with ``RESOURCE_EXHAUSTED`` before reading it. Defaults
            to the largest ``max_body_size`` among the services (capped by an
            HTTPApp's own ``max_body_size``).
        options: Further ``grpc.server`` channel options.

    Returns:
        The server and the port it is bound to.

    Raises:
        ValueError: No service, or two with the same name.
        RuntimeError: grpc could not bind *address*.

    Example:
        >>> import modeldeploy as md
        >>> from modeldeploy.adapters.grpc import server
        >>> with md.Service(lambda x: x * 2, name="double") as service:
        ...     grpc_server, port = server(service)
        ...     grpc_server.start()
        ...     # tritonclient.grpc.InferenceServerClient(f"127.0.0.1:{port}") ...
        ...     grpc_server.stop(grace=1.0).wait()
        True

    .. versionadded:: 0.1.0
    """
    answer = servicer(target)
    if max_message_length is None:
        max_message_length = max(answer.limits.values())
    if max_message_length < 0:
        raise ValueError(f"max_message_length must be >= 0, got {max_message_length}")
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers, thread_name_prefix="modeldeploy-grpc"),
        options=[
            ("grpc.max_receive_message_length", min(max_message_length, _INT32_MAX)),
            ("grpc.max_send_message_length", -1),
            *options,
        ],
    )
    _register(answer, grpc_server)
    port: int = grpc_server.add_insecure_port(address)
    if port == 0:  # older grpcio reports a failed bind as port 0
        raise RuntimeError(f"grpc could not bind {address}")
    return grpc_server, port
