"""
The whole modeldeploy error hierarchy.

Every error carries a stable ``code`` string, an HTTP status and a gRPC status
code name, and a message that is safe to show a client. Details that are not
(a traceback, a library's own message) travel in the chained ``__cause__``.

* ModelDeployError
  x RequestError                the client sent something we cannot use (4xx)
    + DecodeError               400  body is not valid for its format
    + UntrustedPayloadError     400  pickle refused: a global outside the allow-list
    + ValidationError           422  body decoded but does not fit the signature
    + PayloadTooLargeError      413  body or value over a configured limit
    + UnsupportedMediaTypeError 415  no serializer for the Content-Type
    + NotAcceptableError        406  no serializer satisfies the Accept header
    + ModelNotFoundError        404  no model of that name
    + VersionNotFoundError      404  no such version of a known model
    + VersionExistsError        409  a saved version is immutable: saving over it is refused
  x ServiceError                we cannot serve it now (5xx)
    + EncodeError               500  the model's output does not fit the format
    + ModelLoadError            500  the model failed to load or warm up
    + PredictionError           500  the model raised
    + IntegrityError            500  an artifact's hash or signature does not match
    + OverloadedError           503  queue full; ``retry_after`` seconds
    + NotReadyError             503  not started yet, or shutting down
    + DeadlineExceededError     504  the request's deadline passed

Statuses are data, so this module imports no web or RPC framework.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "DeadlineExceededError",
    "DecodeError",
    "EncodeError",
    "IntegrityError",
    "ModelDeployError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotAcceptableError",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PredictionError",
    "RequestCancelledError",
    "RequestError",
    "RequestTimeoutError",
    "ServiceError",
    "UnsupportedMediaTypeError",
    "UntrustedPayloadError",
    "ValidationError",
    "VersionExistsError",
    "VersionNotFoundError",
]


class ModelDeployError(Exception):
    """
    Root of every error modeldeploy raises on purpose.

    Args:
        message: Text safe to show a client. Defaults to the class's
            ``default_message``.

    Attributes:
        code: Stable machine-readable identifier (``"overloaded"``).
        http_status: The HTTP status an adapter answers with.
        grpc_status: The name of the ``grpc.StatusCode`` member, a string so
            that grpc stays an optional dependency.

    .. versionadded:: 0.1.0
    """

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """Return the client-safe error body: ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        """Return HTTP headers that belong with this error (``Retry-After``)."""
        return {}


class RequestError(ModelDeployError):
    """The client sent something we cannot use. Retrying unchanged will not help."""

    code, http_status, grpc_status = "bad_request", 400, "INVALID_ARGUMENT"
    default_message = "bad request"


class ServiceError(ModelDeployError):
    """The service cannot serve the request now, or failed while serving it."""


class DecodeError(RequestError, ValueError):
    """The body is not valid for its format, or is nested too deep."""

    code = "decode_error"
    default_message = "request body could not be decoded"


class UntrustedPayloadError(RequestError):
    """A pickle payload referenced a global outside the allow-list; nothing ran."""

    code, grpc_status = "untrusted_payload", "PERMISSION_DENIED"
    default_message = "payload refused: it is not trusted"


class ValidationError(RequestError, ValueError):
    """The decoded value does not fit the model's signature."""

    code, http_status = "validation_error", 422
    default_message = "input does not match the model signature"


class PayloadTooLargeError(RequestError):
    """A body or value is over a configured size or length limit."""

    code, http_status, grpc_status = "payload_too_large", 413, "RESOURCE_EXHAUSTED"
    default_message = "payload too large"


class UnsupportedMediaTypeError(RequestError):
    """No serializer is registered for the request's ``Content-Type``."""

    code, http_status = "unsupported_media_type", 415
    default_message = "unsupported media type"


class NotAcceptableError(RequestError):
    """No serializer satisfies the request's ``Accept`` header."""

    code, http_status = "not_acceptable", 406
    default_message = "no acceptable response media type"


class ModelNotFoundError(RequestError, LookupError):
    """No model of that name is served here."""

    code, http_status, grpc_status = "model_not_found", 404, "NOT_FOUND"
    default_message = "model not found"


class VersionNotFoundError(RequestError, LookupError):
    """The model exists, the version does not."""

    code, http_status, grpc_status = "version_not_found", 404, "NOT_FOUND"
    default_message = "model version not found"


class RequestTimeoutError(RequestError):
    """
    The client did not send its request (headers or body) within the server's read timeout.

    Answered with 408 and the connection closed: a client that stalls must not
    hold a server thread or connection for longer than the timeout.

    .. versionadded:: 0.1.0
    """

    code, http_status, grpc_status = "request_timeout", 408, "DEADLINE_EXCEEDED"
    default_message = "the request was not received within the read timeout"


class VersionExistsError(RequestError):
    """
    A model store already holds that version; versions never change once saved.

    .. versionadded:: 0.1.0
    """

    code, http_status, grpc_status = "version_exists", 409, "ALREADY_EXISTS"
    default_message = "model version already exists"


class RequestCancelledError(RequestError):
    """
    The caller gave up on a request (a cancelled future or task) before its answer.

    Never sent to a client, who has left; monitors count it under its code, as
    nginx logs 499.

    .. versionadded:: 0.1.0
    """

    code, http_status, grpc_status = "cancelled", 499, "CANCELLED"
    default_message = "request cancelled by its caller"


class EncodeError(ServiceError, ValueError):
    """The model's output cannot be encoded in the negotiated format."""

    code = "encode_error"
    default_message = "response could not be encoded"


class ModelLoadError(ServiceError):
    """The model failed to load or to warm up."""

    code = "model_load_error"
    default_message = "model failed to load"


class PredictionError(ServiceError):
    """The model raised while predicting; the cause is chained."""

    code = "prediction_error"
    default_message = "model failed to predict"


class IntegrityError(ServiceError):
    """An artifact's hash or HMAC signature does not match its manifest."""

    code, grpc_status = "integrity_error", "DATA_LOSS"
    default_message = "artifact integrity check failed"


class OverloadedError(ServiceError):
    """
    The queue is full; the request was refused without being queued.

    Args:
        message: Client-safe text.
        retry_after: Seconds after which a retry is reasonable.
    """

    code, http_status, grpc_status = "overloaded", 503, "UNAVAILABLE"
    default_message = "service overloaded, retry later"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """Return ``Retry-After`` in whole seconds, at least 1, as HTTP wants."""
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class NotReadyError(ServiceError):
    """The service is not started yet, failed to load, or is shutting down."""

    code, http_status, grpc_status = "not_ready", 503, "UNAVAILABLE"
    default_message = "service not ready"


class DeadlineExceededError(ServiceError, TimeoutError):
    """The request's deadline passed before it could be answered."""

    code, http_status, grpc_status = "deadline_exceeded", 504, "DEADLINE_EXCEEDED"
    default_message = "deadline exceeded"
