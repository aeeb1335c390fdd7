"""
The ASGI 3 adapter: serve a Service with uvicorn, hypercorn or any ASGI server.

Pure ASGI, no framework: ``http`` requests go to :meth:`HTTPApp.acall`, and the
``lifespan`` protocol starts the services on startup and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from modeldeploy.codecs import Codec
from modeldeploy.errors import PayloadTooLargeError
from modeldeploy.http import HTTPApp
from modeldeploy.messages import Response, make_request
from modeldeploy.service import Service

__all__ = ["ASGIApp", "asgi"]


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# a model route an inline app answers without the ASGI cycle: (method, path, its call)
DirectRoute = tuple[str, str, tuple["Codec | None", Service]]
"""
The type of an ASGI 3 application: ``async def app(scope, receive, send)``.

.. versionadded:: 0.1.0
"""


def asgi(
    target: Service | HTTPApp, *, inline: bool = False, close_timeout: float | None = 30.0
) -> ASGIApp:
    """
    Return an ASGI 3 application serving *target*.

    Requests are answered by :meth:`HTTPApp.acall`: the model runs on the
    service's worker threads (or, with ``workers=0``, the loop's default
    executor), never on the event loop. A body over the app's ``max_body_size``
    is refused with 413 from its ``Content-Length``, or as soon as the
    streamed body passes the limit, without reading the rest.

    On lifespan startup every service not started yet is started (a failure is
    reported to the server as ``lifespan.startup.failed``); on shutdown every
    service is closed, after finishing the requests it accepted. A server run
    without lifespan starts them on the first request instead.

    Args:
        target: A :class:`~modeldeploy.Service` (served alone) or an
            :class:`~modeldeploy.http.HTTPApp`.
        inline: Compute on the event loop's thread, with no thread hop, as a
            hand-written ASGI app does: the fastest for a model that takes
            microseconds, while a slow one stalls every other request. Needs
            services with ``workers=0``.
        close_timeout: Seconds lifespan shutdown waits for each service's
            accepted requests (``Service.close``); ``None`` waits for all, so a
            model that hangs would hang the server's shutdown.

    Raises:
        ValueError: *inline* with a service that has worker threads (the loop
            would block waiting for them).

    Example:
        ``uvicorn myapp:app`` with ``app = modeldeploy.adapters.asgi(service)``.

    .. versionadded:: 0.1.0
    """
    app = target if isinstance(target, HTTPApp) else HTTPApp(target)
    if inline:
        threaded = [s.name for s in app.services.values() if s.workers]
        if threaded:
            raise ValueError(f"inline=True needs workers=0; {threaded[0]!r} has worker threads")
    return _ASGIApp(app, inline=inline, close_timeout=close_timeout)


# header names seen, both ways; bounded, since clients choose the names they send
_NAMES_IN: dict[bytes, str] = {}
_NAMES_OUT: dict[str, bytes] = {}
_MAX_CACHED_NAMES: Final = 256
_JSON: Final = "application/json"


def _decode_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # ASGI servers send lower-case names
    headers = {}
    names = _NAMES_IN
    for name, value in raw:
        key = names.get(name)
        if key is None:
            key = name.decode("latin-1")
            if len(names) < _MAX_CACHED_NAMES:
                names[name] = key
        headers[key] = value.decode("latin-1")
    return headers


def _encode_headers(response: Response) -> list[tuple[bytes, bytes]]:
    names = _NAMES_OUT
    raw = [
        (names.get(key) or _name_out(key), value.encode("latin-1"))
        for key, value in response.headers.items()
    ]
    raw.append((b"content-length", b"%d" % len(response.body)))
    return raw


def _name_out(key: str) -> bytes:
    name = key.lower().encode("latin-1")
    if len(_NAMES_OUT) < _MAX_CACHED_NAMES:
        _NAMES_OUT[key] = name
    return name


async def _respond(send: Send, response: Response, *, head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": _encode_headers(response),
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else response.body})


class _ASGIApp:
    """The application :func:`asgi` returns; an instance is the ASGI callable."""

    def __init__(
        self, app: HTTPApp, *, inline: bool = False, close_timeout: float | None = 30.0
    ) -> None:
        self.app = app
        self._close_timeout = close_timeout
        self._inline = inline
        self._max_body_size = app.max_body_size
        self._unstarted = True
        self._start_lock: asyncio.Lock | None = None
        self._calls = app._calls  # the app fills it; read here to skip its routing

    def __repr__(self) -> str:
        return f"asgi({self.app!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # http is answered here, not in a method of its own: one coroutine less per request
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        if self._unstarted:
            await self._start()
        headers = _decode_headers(scope["headers"])
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            # mounted under a prefix (Starlette/FastAPI app.mount("/ml", ...)): the
            # scope's path is the full one, and our routes start after root_path
            path = path[len(root) :] or "/"
        length = headers.get("content-length")
        if (
            length is not None
            and length.isascii()
            and length.isdigit()
            and int(length) > self._max_body_size
        ):
            await self._too_large(send, path, int(length), head=scope["method"] == "HEAD")
            return
        message = await receive()
        if message["type"] != "http.request":
            return  # the client left
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body_size:
                    await self._too_large(send, path, size, head=scope["method"] == "HEAD")
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        method: str = scope["method"]
        # a model route seen before: straight to its service, past HTTPApp's routing
        # (the body's size was checked above); one layer less per request
        call = self._calls.get((method, path))
        if call is not None:
            if self._inline:
                response = self._answer(call, method, path, headers, body)
            else:
                codec, service = call
                request = make_request(
                    body,
                    headers.get("content-type") or _JSON,
                    headers.get("accept") or "*/*",
                    headers,
                )
                try:
                    response = await service.ahandle(request, codec)
                except Exception:  # ahandle never raises; a bug in a codec might
                    response = self.app._internal(method, path)
        elif self._inline:
            raw_query = scope.get("query_string")
            query = raw_query.decode("latin-1") if raw_query else ""
            response = self.app(method, path, headers, body, query)
        else:
            raw_query = scope.get("query_string")
            query = raw_query.decode("latin-1") if raw_query else ""
            response = await self.app.acall(method, path, headers, body, query)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _encode_headers(response),
            }
        )
        # HEAD: the GET's headers, content-length included, and no body
        body = response.body if scope["method"] != "HEAD" else b""
        await send({"type": "http.response.body", "body": body})

    def direct_route(self, method: str, path: str) -> DirectRoute | None:
        """
        A model route this app can answer without the ASGI cycle, or None.

        For a server that can skip the ASGI cycle (``modeldeploy serve``'s
        uvicorn protocol, :mod:`modeldeploy.servers.uvicorn`): once started,
        a model route the app has seen before is answered by
        :meth:`direct_answer`, as :meth:`__call__` would, headers, errors and
        all: on the event loop for an inline app (``workers=0``), on the
        service's worker threads for a service that has them. The server
        checks the body's size against :attr:`max_body_size` itself, and sends
        everything else to the app.

        .. versionadded:: 0.1.0
        """
        if self._unstarted:
            return None
        call = self._calls.get((method, path))
        if call is None or not (self._inline or call[1].workers):
            return None  # workers=0 outside inline: the executor's, by the ASGI cycle
        return (method, path, call)

    def direct_answer(
        self,
        route: DirectRoute,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        done: Callable[[Response], None],
    ) -> Response | None:
        """
        Answer a request on a :meth:`direct_route`; never raises.

        Returns the response of an inline app at once; else None, and *done*
        gets the response later, on this event loop's thread
        (:meth:`Service.handle_then`).
        """
        method, path, call = route
        headers = _decode_headers(raw_headers)
        if self._inline:
            return self._answer(call, method, path, headers, body)
        codec, service = call
        request = make_request(
            body, headers.get("content-type") or _JSON, headers.get("accept") or "*/*", headers
        )
        try:
            service.handle_then(request, codec, done)
        except Exception:  # handle_then answers every error itself; a bug might not
            done(self.app._internal(method, path))
        return None

    @property
    def max_body_size(self) -> int:
        """The largest request body answered; larger ones get 413 unread."""
        return self._max_body_size

    def _answer(
        self,
        call: tuple[Codec | None, Service],
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        codec, service = call
        request = make_request(
            body, headers.get("content-type") or _JSON, headers.get("accept") or "*/*", headers
        )
        try:
            return service.handle(request, codec)
        except Exception:  # handle never raises; a bug in a codec might
            return self.app._internal(method, path)

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # closing before accepting refuses the handshake (403)
            await send({"type": "websocket.close", "code": 1003})

    async def _too_large(self, send: Send, path: str, size: int, *, head: bool) -> None:
        error = PayloadTooLargeError(
            f"body of {size} bytes is over the limit of {self._max_body_size}"
        )
        await _respond(send, self.app.error(path, error), head=head)

    async def _start(self) -> str | None:
        """Start every service not started yet; return the first failure's message."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._unstarted:
                return None
            try:
                # loading blocks: keep the loop free for other connections
                return await asyncio.to_thread(self.app.start_services)
            finally:
                # only now: until the services are up, requests wait on the lock
                self._unstarted = False

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                failure = await self._start()
                if failure is not None:
                    await send({"type": "lifespan.startup.failed", "message": failure})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                for service in self.app.services.values():
                    await asyncio.to_thread(service.close, self._close_timeout)
                await send({"type": "lifespan.shutdown.complete"})
                return
