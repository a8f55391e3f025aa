"""``/predict`` and ``/predict_proba`` answered past BentoML's per-request middlewares (issue 15).

A worker spent about 0.8 ms of CPU on a 1-row ``/predict`` served by the compiled path, and the model
5% of it: the rest was BentoML's middleware stack (tracing, request context, timeout, error pages),
Starlette's routing twice (BentoML's app, then deploykit's mounted app) and FastAPI's request
handling. :class:`HotRoutes` wraps BentoML's app. It sends those two routes to deploykit's handler
directly, inside a copy of BentoML's own metrics middleware, so ``/metrics`` counts them exactly as
before. BentoML still starts, supervises and serves the worker, and everything else goes its whole
way: ``/explain``, the card, the probes, ``/metrics``.

The short way is taken only when nothing it skips is asked for: the compiled path answers (in
microseconds, so no timeout can fire), tracing has no exporter, the access log is off, and there is
no concurrency limit. ``DEPLOYKIT_HOT_ROUTES=0`` turns it off.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

HOT_PATHS = {"/predict": "predict", "/predict_proba": "predict_proba"}
METRICS_MIDDLEWARE = "RunnerTrafficMetricsMiddleware"


class HotRoutes:
    """ASGI app: the hot routes to ``handler`` once ``enabled()`` says so, everything else to ``app``.

    The short way is built after the app has answered a first request, because BentoML builds its
    middleware stack, and its metrics, on the first request.
    """

    def __init__(self, app: Any, handler: Callable, enabled: Callable[[], bool]) -> None:
        self.app, self.handler, self.enabled = app, handler, enabled
        self.hot: Any = None
        self.decided = False

    async def __call__(self, scope, receive, send) -> None:
        if self.hot is not None and scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in HOT_PATHS:
            await self.hot(scope, receive, send)
            return
        await self.app(scope, receive, send)
        if not self.decided and scope["type"] == "http":
            self.decided = True
            self.hot = self._short_way() if self.enabled() else None
            if self.hot is not None:  # in the version's log: which way the hot routes go
                print("deploykit: /predict and /predict_proba are answered past BentoML's per-request middlewares "
                      "(DEPLOYKIT_HOT_ROUTES=0 turns it off)", flush=True)

    def _short_way(self) -> Any:
        metrics = find_middleware(self.app, METRICS_MIDDLEWARE)
        if metrics is None:  # metrics turned off in BentoML's configuration: nothing to count
            return self.handler
        if not getattr(metrics, "_is_setup", False):
            return None  # BentoML changed how it sets its metrics up: keep its whole path
        counted = copy.copy(metrics)  # the same metric objects, around deploykit's handler
        counted.app = self.handler
        return counted


def find_middleware(app: Any, name: str) -> Any:
    """The middleware of class ``name`` in a Starlette app's built stack, or None."""
    node = getattr(app, "middleware_stack", None)
    seen = 0
    while node is not None and seen < 64:
        if type(node).__name__ == name:
            return node
        node, seen = getattr(node, "app", None), seen + 1
    return None
