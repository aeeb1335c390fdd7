"""
Run an ``async def`` model from the synchronous ``predict`` every path calls.

A predictor's ``predict`` is called on a worker thread, on the caller's thread
(``workers=0``), or on the event loop's thread (the ASGI adapter's
``inline=True``). :func:`blocking` turns a coroutine function into a plain one
that runs the coroutine to completion there: on an event loop of the calling
thread's own (one per thread, kept for its next call, so a model's async
clients stay bound to one loop), or, when the calling thread already runs a
loop, on a helper thread's loop, waiting for it as any inline computation
does.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["blocking", "is_async", "run"]

_local = threading.local()
_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def is_async(fn: object) -> bool:
    """Whether calling *fn* returns a coroutine: ``async def``, or ``async def __call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004  # the class's, not callable()
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def blocking(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Return a plain function that calls *fn* and runs its coroutine to completion."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return run(fn(*args, **kwargs))

    return call


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run *coroutine* to completion from synchronous code, on any thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _own_loop().run_until_complete(coroutine)
    # this thread runs a loop, which cannot be re-entered: a helper thread runs it
    return _helper_pool().submit(_run_on_own_loop, coroutine).result()


def _run_on_own_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return _own_loop().run_until_complete(coroutine)


class _Loop:
    """A thread's own event loop, closed when the thread ends (its locals are dropped)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_running():
            self.loop.close()


def _own_loop() -> asyncio.AbstractEventLoop:
    held: _Loop | None = getattr(_local, "held", None)
    if held is None or held.loop.is_closed():
        held = _Loop()
        _local.held = held
    return held.loop


def _helper_pool() -> ThreadPoolExecutor:
    global _helper  # one pool, made on first need
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(thread_name_prefix="modeldeploy-async")
        return _helper
