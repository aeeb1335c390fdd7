"""
The Flask integration: mount a Service's routes into an existing Flask app.

:func:`blueprint` returns a ``flask.Blueprint`` whose few rules cover the paths
:class:`~modeldeploy.http.HTTPApp` serves (``/v2...``, ``/predict``,
``/models/...``, ``/metrics``, ``/openapi.json``); every request on them is answered by the
HTTPApp. The app's own routes stay its own.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from modeldeploy._extras import needs

with needs("modeldeploy.adapters.flask"):
    import flask
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from modeldeploy.adapters._body import check_size, read_body
from modeldeploy.errors import DecodeError, ModelDeployError, PayloadTooLargeError
from modeldeploy.http import HTTPApp
from modeldeploy.messages import Response
from modeldeploy.service import Service

__all__ = ["blueprint"]

# OPTIONS stays Flask's own (automatic answers); HEAD is answered as GET
_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# (rule, endpoint, the HTTPApp path it stands for); "{}" takes the <path:rest> part
_RULES: Final = (
    ("/v2", "v2", "/v2"),
    ("/v2/<path:rest>", "v2_path", "/v2/{}"),
    ("/predict", "predict", "/predict"),
    ("/models/<path:rest>", "models", "/models/{}"),
    ("/metrics", "metrics", "/metrics"),
    ("/openapi.json", "openapi", "/openapi.json"),
)


def blueprint(
    target: Service | Iterable[Service] | HTTPApp,
    *,
    name: str = "modeldeploy",
    url_prefix: str = "",
) -> flask.Blueprint:
    """
    Return a Flask blueprint that serves *target* inside an existing Flask app.

    The blueprint answers ``/v2`` and ``/v2/...`` (the Open Inference Protocol),
    ``/predict`` and ``/models/{name}/predict`` (content negotiation), and
    ``/metrics``, under *url_prefix*; the requests go to
    :class:`~modeldeploy.http.HTTPApp`, so the answers are the ones the ASGI and
    WSGI adapters give. Other paths are the app's. A body over the app's
    ``max_body_size`` is refused with a JSON 413 from its ``Content-Length``
    before it is read, and a streamed (chunked) body as soon as it passes the
    limit; the Flask app's ``MAX_CONTENT_LENGTH`` also applies when lower.

    Services not started yet are started by the first request the blueprint
    answers (in the worker process that serves it), as the WSGI adapter does.

    Args:
        target: A :class:`~modeldeploy.Service`, several with distinct names,
            or an :class:`~modeldeploy.http.HTTPApp`.
        name: The blueprint's name; endpoints are ``{name}.v2``,
            ``{name}.predict`` and so on. Mount one service set per name.
        url_prefix: Path prefix for every route (``"/ml"``); ``""`` for none.

    Example:
        >>> import flask
        >>> import modeldeploy as md
        >>> from modeldeploy.adapters.flask import blueprint
        >>> app = flask.Flask(__name__)
        >>> service = md.Service(lambda x: x * 2, name="double")
        >>> app.register_blueprint(blueprint(service, url_prefix="/ml"))

    .. versionadded:: 0.1.0
    """
    http_app = target if isinstance(target, HTTPApp) else HTTPApp(target)
    view = _View(http_app)
    bp = flask.Blueprint(name, __name__, url_prefix=url_prefix or None)
    for rule, endpoint, path in _RULES:
        bp.add_url_rule(
            rule,
            endpoint=endpoint,
            view_func=view.bind(path),
            methods=_METHODS,
            strict_slashes=False,
        )
    return bp


class _View:
    """Answers the blueprint's requests with one HTTPApp."""

    def __init__(self, app: HTTPApp) -> None:
        self.app = app
        self._max_body_size = app.max_body_size
        self._start_services = app.start_services

    def bind(self, template: str) -> Callable[..., flask.Response]:
        if "{}" in template:

            def with_rest(rest: str) -> flask.Response:
                return self.answer(template.format(rest))

            return with_rest

        def fixed() -> flask.Response:
            return self.answer(template)

        return fixed

    def answer(self, path: str) -> flask.Response:
        self._start_services()
        request = flask.request
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            body = self._read_body(request)
        except ModelDeployError as exc:
            response = self.app.error(path, exc)
        else:
            # HEAD is answered as GET by the app; werkzeug drops the body
            query = request.query_string.decode("latin-1")
            response = self.app(request.method, path, headers, body, query)
        return _flask_response(response)

    def _read_body(self, request: flask.Request) -> bytes:
        limit = self._max_body_size
        length = request.content_length
        if length is not None:
            # ours first: werkzeug's own limit trips as soon as the stream is touched
            check_size(length, limit)
        try:
            return read_body(request.stream, length, limit)
        except RequestEntityTooLarge as exc:  # the Flask app's MAX_CONTENT_LENGTH
            raise PayloadTooLargeError("body is over the app's size limit") from exc
        except ClientDisconnected as exc:
            raise DecodeError("the body is shorter than its Content-Length") from exc


def _flask_response(response: Response) -> flask.Response:
    out = flask.Response(response.body, status=response.status)
    headers = out.headers
    # Flask set a default text/html Content-Type: replace it, or drop it when
    # the answer has none (an empty health answer)
    del headers["Content-Type"]
    for name, value in response.headers.items():
        headers[name] = value
    return out
