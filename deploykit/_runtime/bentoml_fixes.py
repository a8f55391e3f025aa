"""Fixes for BentoML 1.4's traffic middlewares, applied in the serving process only.

The request timeout:

BentoML wraps every request in ``TimeoutMiddleware``, which schedules ``loop.call_later(timeout, ...)``
and never cancels it. Each answered request therefore leaves a timer and the future it holds alive for
the whole timeout (60-120 s): at 1,500 requests/s that is about 100,000 live timers, and the garbage
collector's full passes over them stall the event loop, which shows as a p99 in the hundreds of
milliseconds. The replacement below behaves the same (a 504 after ``timeout`` seconds) but cancels its
timer as soon as the response starts.

The concurrency limit (``traffic.max_concurrency``, off unless an operator sets it) answers 429 with
``{"error": ...}`` only; the replacement gives the documented error shape and a Retry-After. Both sit
outside every app middleware, so they write the shape themselves.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import error_body


async def _timeout_call(self, scope, receive, send) -> None:
    """TimeoutMiddleware.__call__, with its timer cancelled once the response starts."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message) -> None:
        if not waiter.done():
            waiter.set_result(None)
            timer.cancel()
        await send(message)

    task = asyncio.ensure_future(self.app(scope, receive, _send))
    try:
        await waiter
    except asyncio.TimeoutError:
        if task.cancel():
            from starlette.responses import JSONResponse

            response = JSONResponse(error_body(f"the request took longer than {self.timeout} seconds"),
                                    status_code=504)
            await response(scope, receive, send)
    else:
        await task
    finally:
        timer.cancel()


async def _concurrency_call(self, scope, receive, send) -> None:
    """MaxConcurrencyMiddleware.__call__, answering 429 in the error shape with a Retry-After."""
    if scope["type"] not in ("http", "websocket") or scope["path"] in self.skip_paths:
        return await self.app(scope, receive, send)
    if self._semaphore.locked():
        from starlette.responses import JSONResponse

        response = JSONResponse(error_body("too many requests in flight on this server; retry in a second"),
                                status_code=429, headers={"retry-after": "1"})
        await response(scope, receive, send)
        return
    async with self._semaphore:
        await self.app(scope, receive, send)


def apply() -> bool:
    """Patch BentoML's traffic middlewares; False if this BentoML has none (nothing to fix)."""
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:
        return False
    fixed = False
    for name, call in (("TimeoutMiddleware", _timeout_call), ("MaxConcurrencyMiddleware", _concurrency_call)):
        middleware = getattr(traffic, name, None)
        if middleware is None or getattr(middleware, "_deploykit_fixed", False):
            continue
        middleware.__call__ = call  # a coroutine function, so ASGI servers see an ASGI 3 app
        middleware._deploykit_fixed = fixed = True
    return fixed


def wrap_service_app(wrap) -> bool:
    """Have BentoML's service app factory return ``wrap(app)`` (:mod:`.hotroutes`); False if this BentoML
    builds its app some other way (then nothing changes)."""
    try:
        from _bentoml_impl.server.app import ServiceAppFactory
    except ImportError:
        return False
    if getattr(ServiceAppFactory, "_deploykit_wrapped", False):
        return True
    build = ServiceAppFactory.__call__

    def __call__(self, *args, **kwargs):
        return wrap(build(self, *args, **kwargs))

    ServiceAppFactory.__call__ = __call__
    ServiceAppFactory._deploykit_wrapped = True
    return True
