"""
The WSGI adapter (PEP 3333): serve a Service with gunicorn, uWSGI or wsgiref.

Each request is answered on the server's own thread by :meth:`HTTPApp.__call__`;
with ``workers=0`` the model runs right there, with no second thread hop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Final

from modeldeploy.adapters._body import content_length, read_wsgi_input
from modeldeploy.errors import ModelDeployError
from modeldeploy.http import HTTPApp
from modeldeploy.service import Service

__all__ = ["WSGIApp", "wsgi"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
"""
The type of a WSGI application: ``app(environ, start_response) -> iterable of bytes``.

.. versionadded:: 0.1.0
"""

_STATUS_LINES: Final = {int(s): f"{int(s)} {s.phrase}" for s in HTTPStatus}
# environ key -> header name; bounded, since clients choose the names
_HEADER_NAMES: dict[str, str] = {}
_MAX_CACHED_NAMES: Final = 256


def wsgi(target: Service | HTTPApp) -> WSGIApp:
    """
    Return a WSGI application serving *target*.

    The body is read from ``wsgi.input`` up to ``CONTENT_LENGTH``; one over the
    app's ``max_body_size`` is refused with 413 before it is read. A chunked
    body (when the server sets ``wsgi.input_terminated``) is read up to the limit.

    Services not started yet are started by the first request, in the worker
    process that serves it: worker threads do not survive ``fork()``, so a
    service started in gunicorn's master (``--preload``) would never answer.

    Args:
        target: A :class:`~modeldeploy.Service` (served alone) or an
            :class:`~modeldeploy.http.HTTPApp`.

    Example:
        ``gunicorn myapp:app`` with ``app = modeldeploy.adapters.wsgi(service)``.

    .. versionadded:: 0.1.0
    """
    return _WSGIApp(target if isinstance(target, HTTPApp) else HTTPApp(target))


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"{status} Unknown"


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = _HEADER_NAMES.get(key)
            if name is None:
                name = key[5:].replace("_", "-").lower()
                if len(_HEADER_NAMES) < _MAX_CACHED_NAMES:
                    _HEADER_NAMES[key] = name
            headers[name] = value
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        headers["content-type"] = content_type
    content_length = environ.get("CONTENT_LENGTH")
    if content_length:
        headers["content-length"] = content_length
    return headers


class _WSGIApp:
    """The application :func:`wsgi` returns; an instance is the WSGI callable."""

    def __init__(self, app: HTTPApp) -> None:
        self.app = app
        self._call = app.__call__
        self._max_body_size = app.max_body_size
        self._start_services = app.start_services

    def __repr__(self) -> str:
        return f"wsgi({self.app!r})"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self._start_services()
        path: str = environ.get("PATH_INFO", "")
        if not path.isascii():
            # PEP 3333 hands the raw bytes over as latin-1; URLs are UTF-8
            path = path.encode("latin-1").decode("utf-8", "replace")
        headers = _headers(environ)
        length = headers.get("content-length")
        try:
            size = content_length(length) if length else None
            body = read_wsgi_input(environ, size, self._max_body_size)
        except ModelDeployError as exc:
            response = self.app.error(path, exc)
        else:
            response = self._call(
                environ["REQUEST_METHOD"], path, headers, body, environ.get("QUERY_STRING", "")
            )
        out = list(response.headers.items())
        out.append(("Content-Length", str(len(response.body))))
        start_response(_status_line(response.status), out)
        # HEAD: the GET's headers, Content-Length included, and no body
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [response.body]
