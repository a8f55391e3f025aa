"""A fix for BentoML 1.4's request timeout, applied in the serving process only.

BentoML wraps every request in ``TimeoutMiddleware``, which schedules ``loop.call_later(timeout, ...)``
and never cancels it. Each answered request therefore leaves a timer and the future it holds alive for
the whole timeout (60-120 s): at 1,500 requests/s that is about 100,000 live timers, and the garbage
collector's full passes over them stall the event loop, which shows as a p99 in the hundreds of
milliseconds. The replacement below behaves the same (a 504 after ``timeout`` seconds) but cancels its
timer as soon as the response starts.
"""

from __future__ import annotations

import asyncio
from typing import Any


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

            response = JSONResponse({"error": f"the request took longer than {self.timeout} seconds", "details": []},
                                    status_code=504)
            await response(scope, receive, send)
    else:
        await task
    finally:
        timer.cancel()


def apply() -> bool:
    """Patch BentoML's TimeoutMiddleware; False if this BentoML has no such class (nothing to fix)."""
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:
        return False
    middleware = getattr(traffic, "TimeoutMiddleware", None)
    if middleware is None or getattr(middleware, "_deploykit_fixed", False):
        return False
    middleware.__call__ = _timeout_call  # a coroutine function, so ASGI servers see an ASGI 3 app
    middleware._deploykit_fixed = True
    return True
