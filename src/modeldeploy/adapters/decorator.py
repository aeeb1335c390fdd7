"""
The decorator adapter: make any framework's handler function a model endpoint.

``@handler(target, request_from=..., response_to=...)`` turns a view (a Django
or FastAPI view, an AWS Lambda ``handler(event, context)``, a function your
framework calls) into: translate the framework's request into a
:class:`~modeldeploy.Request`, answer it with the service, translate the
:class:`~modeldeploy.Response` into the framework's own response object.

Ready-made translators: :func:`lambda_request` / :func:`lambda_response` for
AWS API Gateway proxy events (REST and HTTP APIs), :func:`environ_request` for
WSGI-environ-like dicts (Django's ``request.META``, Pyramid's and Bottle's
``request.environ``), and :func:`tuple_response` for frameworks whose views may
return ``(body, status, headers)``. Only the standard library is imported.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

from modeldeploy.adapters._body import content_length, read_wsgi_input
from modeldeploy.errors import DecodeError, ModelDeployError
from modeldeploy.http import TIMEOUT_HEADER, HTTPApp
from modeldeploy.messages import Request, Response
from modeldeploy.serializers._base import DEFAULT_MAX_SIZE
from modeldeploy.service import Service

__all__ = [
    "METHOD_HEADER",
    "PATH_HEADER",
    "environ_request",
    "handler",
    "lambda_request",
    "lambda_response",
    "tuple_response",
]

logger = logging.getLogger("modeldeploy")

METHOD_HEADER: Final = ":method"
"""
Pseudo-header (as in HTTP/2) of a :class:`~modeldeploy.Request` giving its HTTP
method; an :class:`~modeldeploy.http.HTTPApp` target routes by it.

.. versionadded:: 0.1.0
"""

PATH_HEADER: Final = ":path"
"""
Pseudo-header giving the request's path and query (``/v2/health/ready``); an
:class:`~modeldeploy.http.HTTPApp` target routes by it.

.. versionadded:: 0.1.0
"""

_View = TypeVar("_View", bound=Callable[..., Any])
_TEXT_TYPES: Final = frozenset({"application/json", "application/xml"})
_JSON: Final = "application/json"
_DEFAULT_PATH: Final = "/predict"


# -- the decorator -------------------------------------------------------------------


def handler(
    target: Service | HTTPApp,
    *,
    request_from: Callable[..., Request | Awaitable[Request]],
    response_to: Callable[[Response], Any],
) -> Callable[[_View], _View]:
    """
    Make a framework's handler function answer with *target*.

    The decorated function keeps its name, docstring and signature (frameworks
    inspect them to route and to inject arguments), but its body is never run:
    a call runs ``request_from(*args, **kwargs)`` with the call's arguments,
    answers the :class:`~modeldeploy.Request` it returns, and returns
    ``response_to(response)``. So a view is written as a stub::

        @handler(service, request_from=lambda_request, response_to=lambda_response)
        def predict(event, context): ...

    With a :class:`~modeldeploy.Service`, every call is one
    :meth:`Service.handle` (the ``/predict`` flow: content negotiation, errors
    as ``{"error": {"code", "message"}}``), whatever the URL. With an
    :class:`~modeldeploy.http.HTTPApp`, calls are routed as HTTP requests by the
    request's :data:`METHOD_HEADER` and :data:`PATH_HEADER` pseudo-headers
    (``POST /predict`` without them), so one function serves the Open Inference
    Protocol, ``/predict`` and ``/metrics`` (an API Gateway ``{proxy+}`` route).

    A coroutine function becomes a coroutine function: *request_from* may then
    return an awaitable (``await request.body()`` in FastAPI), and the model is
    awaited through :meth:`Service.ahandle` / :meth:`HTTPApp.acall`, never
    blocking the event loop.

    The request's ``deadline`` bounds the prediction; with an HTTPApp it
    travels as the ``x-request-timeout`` header unless that is set.

    Args:
        target: The service, or the HTTPApp, that answers.
        request_from: Builds the :class:`~modeldeploy.Request` from the
            handler's arguments. A :class:`~modeldeploy.ModelDeployError` it
            raises becomes that error's response; any other exception a 500
            ``internal error`` (logged).
        response_to: Builds the framework's response from the
            :class:`~modeldeploy.Response`; its exceptions propagate.

    Returns:
        The decorator.

    .. versionadded:: 0.1.0
    """
    answer = _Answer(target)

    def decorate(view: _View) -> _View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                return response_to(await answer.acall(request_from, args, kwargs))

            return async_view  # type: ignore[return-value]

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            return response_to(answer.call(request_from, args, kwargs))

        return sync_view  # type: ignore[return-value]

    return decorate


class _Answer:
    """Answers a translated request with a Service or an HTTPApp; never raises."""

    def __init__(self, target: Service | HTTPApp) -> None:
        if isinstance(target, HTTPApp):
            self.service: Service | None = None
            self.app = target
        elif isinstance(target, Service):
            self.service = target
            # formats the errors raised before the service sees the request
            self.app = HTTPApp(target)
        else:
            raise TypeError(f"expected a Service or an HTTPApp, got {type(target).__name__}")

    def call(self, request_from: Callable[..., Any], args: Any, kwargs: Any) -> Response:
        try:
            request = request_from(*args, **kwargs)
            if inspect.isawaitable(request):
                if inspect.iscoroutine(request):
                    request.close()  # never awaited: say so here, not in a GC warning
                raise TypeError("request_from returned an awaitable to a sync handler")
            if self.service is not None:
                return self.service.handle(request)
            routed = _routed(request)
            return _for_method(routed[0], self.app(*routed))
        except ModelDeployError as exc:
            return self.app.error(_DEFAULT_PATH, exc)
        except Exception:
            return self._internal()

    async def acall(self, request_from: Callable[..., Any], args: Any, kwargs: Any) -> Response:
        try:
            request = request_from(*args, **kwargs)
            if inspect.isawaitable(request):
                request = await request
            if self.service is not None:
                return await self.service.ahandle(request)
            routed = _routed(request)
            return _for_method(routed[0], await self.app.acall(*routed))
        except ModelDeployError as exc:
            return self.app.error(_DEFAULT_PATH, exc)
        except Exception:
            return self._internal()

    def _internal(self) -> Response:
        logger.exception("unexpected error translating a request")
        return self.app.error(_DEFAULT_PATH, ModelDeployError("internal error"))


def _for_method(method: str, response: Response) -> Response:
    """A HEAD request gets the GET's status and headers, and no body."""
    if method != "HEAD":
        return response
    return Response(response.status, response.headers, b"")


def _routed(request: Request) -> tuple[str, str, dict[str, str], bytes | memoryview, str]:
    """The arguments of an HTTPApp call for a translated request."""
    if not isinstance(request, Request):
        raise TypeError(f"request_from must return a Request, not {type(request).__name__}")
    headers = dict(request.headers)
    method = headers.get(METHOD_HEADER, "POST").upper()
    path, _, query = headers.get(PATH_HEADER, _DEFAULT_PATH).partition("?")
    headers["content-type"] = request.content_type
    headers["accept"] = request.accept
    if request.deadline is not None and TIMEOUT_HEADER not in headers:
        remaining = request.deadline - time.monotonic()
        # a deadline already passed still needs a positive header value: it
        # then expires before the model runs, as it should
        headers[TIMEOUT_HEADER] = repr(max(remaining, 1e-6))
    return method, path or "/", headers, request.body, query


# -- AWS Lambda (API Gateway proxy integration) ---------------------------------------


def lambda_request(event: Mapping[str, Any], context: Any = None) -> Request:
    """
    Translate an API Gateway proxy event into a :class:`~modeldeploy.Request`.

    Reads both payload formats: REST APIs (``httpMethod``, ``path``,
    ``headers`` / ``multiValueHeaders``, ``queryStringParameters``) and HTTP APIs
    (``version: "2.0"``, ``requestContext.http.method``, ``rawPath``,
    ``rawQueryString``). Header names are matched case-insensitively (they are
    lower-cased); a ``body`` with ``isBase64Encoded`` is base64-decoded. The
    method and path go into the :data:`METHOD_HEADER` and :data:`PATH_HEADER`
    pseudo-headers. With a Lambda *context*, its remaining time is the
    request's deadline.

    Args:
        event: The event Lambda passes to the handler.
        context: The Lambda context object, or ``None``.

    Raises:
        DecodeError: The event is not a proxy event: not an object, a header
            or the body of the wrong type, a body that is not valid base64.

    .. versionadded:: 0.1.0
    """
    if not isinstance(event, Mapping):
        raise DecodeError("the Lambda event is not an object")
    headers = _lambda_headers(event)
    http = _mapping(_mapping(event.get("requestContext")).get("http"))
    if event.get("version") == "2.0" or "rawPath" in event:
        method = http.get("method")
        path = event.get("rawPath")
        query = event.get("rawQueryString") or ""
    else:
        method = event.get("httpMethod")
        path = event.get("path")
        query = _lambda_query(event)
    if not isinstance(method, str) or not isinstance(path, str) or not isinstance(query, str):
        raise DecodeError("the Lambda event's method, path or query is not a string")
    headers[METHOD_HEADER] = method.upper() or "POST"
    headers[PATH_HEADER] = f"{path or '/'}?{query}" if query else path or "/"
    deadline = None
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        deadline = time.monotonic() + remaining_ms() / 1000
    return Request(
        _lambda_body(event),
        headers.get("content-type") or _JSON,
        headers.get("accept") or "*/*",
        headers,
        deadline,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _lambda_headers(event: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    # multiValueHeaders (REST APIs) holds every value; headers the last one of each
    for name, values in _mapping(event.get("multiValueHeaders")).items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DecodeError("the Lambda event's multiValueHeaders must map to string lists")
        if isinstance(name, str) and values:
            headers[name.lower()] = ", ".join(values)
    for name, value in _mapping(event.get("headers")).items():
        if not isinstance(value, str):
            raise DecodeError("the Lambda event's header values must be strings")
        if isinstance(name, str):
            headers.setdefault(name.lower(), value)
    return headers


def _lambda_query(event: Mapping[str, Any]) -> str:
    multi = _mapping(event.get("multiValueQueryStringParameters"))
    if multi:
        return urlencode(multi, doseq=True)
    return urlencode(_mapping(event.get("queryStringParameters")))


def _lambda_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise DecodeError("the Lambda event's body must be a string")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError("the Lambda event's body is not valid base64") from exc
    return body.encode("utf-8", "surrogatepass")


def lambda_response(response: Response) -> dict[str, Any]:
    """
    Translate a :class:`~modeldeploy.Response` into an API Gateway proxy result.

    Returns ``{"statusCode", "headers", "body", "isBase64Encoded"}``. A JSON,
    XML or ``text/*`` body that is valid UTF-8 goes as text; any other body
    (msgpack, pickle, protobuf, V2 binary tensors) is base64-encoded with
    ``isBase64Encoded: true``. A REST API must list those media types (or
    ``*/*``) in its *binary media types* to send them to clients as bytes.

    Args:
        response: The answer to send.

    .. versionadded:: 0.1.0
    """
    headers = {str(name): str(value) for name, value in response.headers.items()}
    media_type = _header(headers, "content-type").partition(";")[0].strip().lower()
    body = response.body
    if _is_text(media_type):
        try:
            return {
                "statusCode": response.status,
                "headers": headers,
                "body": body.decode("utf-8"),
                "isBase64Encoded": False,
            }
        except UnicodeDecodeError:
            pass  # text in name only: send the bytes
    return {
        "statusCode": response.status,
        "headers": headers,
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def _is_text(media_type: str) -> bool:
    return (
        not media_type
        or media_type.startswith("text/")
        or media_type in _TEXT_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


# -- WSGI environ and tuples -----------------------------------------------------------


def environ_request(
    environ: Mapping[str, Any],
    body: bytes | memoryview | None = None,
    *,
    max_body_size: int = DEFAULT_MAX_SIZE,
) -> Request:
    """
    Translate a WSGI-environ-like dict into a :class:`~modeldeploy.Request`.

    Reads ``REQUEST_METHOD``, ``PATH_INFO``, ``QUERY_STRING``, ``CONTENT_TYPE``,
    ``CONTENT_LENGTH`` and the ``HTTP_*`` headers (PEP 3333), as found in
    Django's ``request.META``, Pyramid's and Bottle's ``request.environ`` or
    Falcon's ``req.env``. The body is *body* when given (a framework that read
    it already: ``request.body`` in Django), else read from ``wsgi.input``: up
    to ``CONTENT_LENGTH``, refused before reading when that is over
    *max_body_size*; without it, read up to the limit only when the server marks
    the stream terminated (``wsgi.input_terminated``, a chunked body).

    Args:
        environ: The environ dict.
        body: The body, if the framework has read it.
        max_body_size: Largest body read from ``wsgi.input``, in bytes.
            Bind a tighter one with :func:`functools.partial`.

    Raises:
        PayloadTooLargeError: The body is over *max_body_size*.
        DecodeError: ``CONTENT_LENGTH`` is not a number, or the stream ends
            before it.

    .. versionadded:: 0.1.0
    """
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if isinstance(key, str) and key.startswith("HTTP_") and isinstance(value, str):
            headers[key[5:].replace("_", "-").lower()] = value
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        headers["content-type"] = str(content_type)
    length = environ.get("CONTENT_LENGTH")
    if length:
        headers["content-length"] = str(length)
    path = str(environ.get("PATH_INFO") or "/")
    query = str(environ.get("QUERY_STRING") or "")
    headers[METHOD_HEADER] = str(environ.get("REQUEST_METHOD") or "POST").upper()
    headers[PATH_HEADER] = f"{path}?{query}" if query else path
    if body is None:
        body = _read_environ_body(environ, headers.get("content-length"), max_body_size)
    return Request(
        body,
        headers.get("content-type") or _JSON,
        headers.get("accept") or "*/*",
        headers,
    )


def _read_environ_body(environ: Mapping[str, Any], length: str | None, limit: int) -> bytes:
    if environ.get("wsgi.input") is None:
        return b""
    # the environ may come from any framework: forgive spaces around the number
    size = content_length(length.strip()) if length else None
    return read_wsgi_input(environ, size, limit)


def tuple_response(response: Response) -> tuple[bytes, int, dict[str, str]]:
    """
    Translate a :class:`~modeldeploy.Response` into ``(body, status, headers)``.

    The tuple Flask and Quart views may return, and an easy start for any
    other framework's response constructor.

    .. versionadded:: 0.1.0
    """
    return response.body, response.status, dict(response.headers)
