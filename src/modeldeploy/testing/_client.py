"""
The in-process HTTP client of :func:`modeldeploy.testing.client`, built on httpx.

httpx's ``WSGITransport`` calls a WSGI app directly. Its ``ASGITransport`` is
async only, so :class:`_ASGIPortal` runs the ASGI app on an event loop of its own,
in a thread, and hands each request over: the test stays synchronous, and the app
runs on a real loop, lifespan included, as under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterable, MutableMapping
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from ..adapters.asgi import ASGIApp, asgi
from ..adapters.wsgi import WSGIApp, wsgi
from ..http import HTTPApp
from ..service import Service

__all__ = ["Client"]

_T = TypeVar("_T")
_TIMEOUT_S = 60.0  # a request or a lifespan step that takes longer is a hung test


class _ASGIPortal(httpx.BaseTransport):
    """A synchronous httpx transport that runs an ASGI app on its own loop thread."""

    def __init__(self, app: ASGIApp, *, lifespan: bool) -> None:
        self._app = app
        self._transport = httpx.ASGITransport(app)
        self._lifespan = lifespan
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="modeldeploy-test-client", daemon=True
        )
        self._thread.start()
        self._messages: asyncio.Queue[MutableMapping[str, Any]] | None = None
        self._events: asyncio.Queue[MutableMapping[str, Any]] | None = None
        self._task: asyncio.Future[None] | None = None

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_TIMEOUT_S)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer *request* with the app, on the portal's loop."""

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            response = await self._transport.handle_async_request(request)
            body = await response.aread()
            return response.status_code, response.headers.raw, body

        status, headers, body = self._run(call())
        return httpx.Response(status, headers=headers, content=body, request=request)

    def startup(self) -> None:
        """Run the app's lifespan startup; raise if the app reports a failure."""
        if not self._lifespan:
            return
        self._messages = asyncio.Queue()
        self._events = asyncio.Queue()
        messages, events = self._messages, self._events

        async def lifespan() -> None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            try:
                # an app without lifespan support raises on the scope: it is served
                # without lifespan, as uvicorn's default "auto" mode does
                with contextlib.suppress(Exception):
                    await self._app(scope, messages.get, events.put)
            finally:
                # an app without lifespan returns (or raises) at once: unblock the waiter
                await events.put({"type": "lifespan.ended"})

        async def start() -> MutableMapping[str, Any]:
            self._task = asyncio.ensure_future(lifespan())
            await messages.put({"type": "lifespan.startup"})
            return await events.get()

        answer = self._run(start())
        if answer["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the app failed to start: {answer.get('message', '')}")

    def shutdown(self) -> None:
        """Run the app's lifespan shutdown, then stop the loop thread."""
        try:
            if self._task is not None and not self._task.done():
                assert self._messages is not None and self._events is not None
                messages, events, task = self._messages, self._events, self._task

                async def stop() -> None:
                    await messages.put({"type": "lifespan.shutdown"})
                    await events.get()
                    await asyncio.wait([task], timeout=_TIMEOUT_S)

                self._run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_TIMEOUT_S)
            self._loop.close()

    def close(self) -> None:
        """Nothing to release per request; :meth:`shutdown` ends the loop."""


class Client(httpx.Client):
    """
    An ``httpx.Client`` that calls an app in this process; see :func:`~modeldeploy.testing.client`.

    Use it as a context manager: entering starts the app (lifespan for ASGI, the
    services for WSGI), leaving closes it.
    """

    def __init__(
        self,
        target: Service | Iterable[Service] | HTTPApp | ASGIApp | WSGIApp,
        *,
        interface: Literal["asgi", "wsgi"] = "asgi",
        base_url: str = "http://testserver",
        **kwargs: Any,
    ) -> None:
        if interface not in ("asgi", "wsgi"):
            raise ValueError(f"interface must be 'asgi' or 'wsgi', got {interface!r}")
        http_app = _http_app(target)
        self.http_app: HTTPApp | None = http_app
        self._portal: _ASGIPortal | None = None
        transport: httpx.BaseTransport
        if interface == "asgi":
            app: Any = asgi(http_app) if http_app is not None else target
            self._portal = transport = _ASGIPortal(app, lifespan=True)
        else:
            app = wsgi(http_app) if http_app is not None else target
            transport = httpx.WSGITransport(app=app)
        super().__init__(transport=transport, base_url=base_url, **kwargs)

    def __enter__(self) -> Client:
        super().__enter__()
        try:
            if self._portal is not None:
                self._portal.startup()
            elif self.http_app is not None:
                failure = self.http_app.start_services()
                if failure is not None:
                    raise RuntimeError(f"the app failed to start: {failure}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
        super().__exit__(exc_type, exc_value, traceback)

    def close(self) -> None:
        """Close the app (lifespan shutdown, or each service), then the client."""
        portal, self._portal = self._portal, None
        try:
            if portal is not None:
                portal.shutdown()
            if self.http_app is not None:
                for service in self.http_app.services.values():
                    service.close()
        finally:
            super().close()


def _http_app(target: object) -> HTTPApp | None:
    if isinstance(target, HTTPApp):
        return target
    if isinstance(target, Service):
        return HTTPApp(target)
    if isinstance(target, (list, tuple)) and all(isinstance(s, Service) for s in target):
        return HTTPApp(target)
    if callable(target):
        return None
    raise TypeError(
        f"client() takes a Service, several, an HTTPApp, an ASGI or a WSGI app; "
        f"got {type(target).__name__}"
    )
