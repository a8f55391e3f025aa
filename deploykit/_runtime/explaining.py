"""``/explain`` off the event loop: a cost budget per request, bounded concurrency, and a deadline.

Explaining costs from microseconds (a linear model) to tens of milliseconds per row (Kernel SHAP), and
the cost per row is measured when the package is made (``manifest["explainer"]["seconds_per_row"]``).
A request whose rows would cost more than ``explain_seconds`` is refused at once (413). Otherwise it
waits for one of ``explain_concurrency`` worker threads and runs there, rows in chunks of about 50 ms;
when ``explain_deadline_seconds`` pass (waiting included) the request gets a 503 with Retry-After and
its explanation stops at the next chunk, so an abandoned one does not keep a core busy.

Threads, not processes: measured on a Kernel SHAP model (docs/serving.md), ``/livez`` answered within
a few milliseconds while a 1,000-row explanation ran in a thread, as it did with the explanation in
another process; a process would double the worker's memory (model and SHAP loaded twice) and need
a second start-up.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import InputError, Unavailable
from .explain import Stopped
from .limits import Limits


class ExplainPool:
    """Runs ``explain(columns, stop)`` in worker threads under the package's limits."""

    def __init__(self, explain, limits: Limits, explainer: dict | None) -> None:
        self.explain, self.limits = explain, limits
        self.config = explainer or {}
        self.per_row = float(self.config.get("seconds_per_row") or 0.0)
        self.slots = asyncio.Semaphore(limits.explain_concurrency)
        self.executor = ThreadPoolExecutor(max_workers=limits.explain_concurrency, thread_name_prefix="deploykit-explain")
        self.busy_until = 0.0  # when the work already admitted should be done (monotonic), for Retry-After

    def check_budget(self, rows: int) -> None:
        """Refuse (413) a request whose estimated cost is over the budget."""
        cost = rows * self.per_row
        if cost <= self.limits.explain_seconds:
            return
        fits = max(1, int(self.limits.explain_seconds / self.per_row))
        name = self.config.get("algorithm", "SHAP")
        raise InputError(
            f"explaining {rows} rows would take about {cost:.1f} s ({name}: {self.per_row * 1e3:.3g} ms per row, "
            f"measured when the package was made), over this service's budget of {self.limits.explain_seconds:g} s "
            f"per request; send at most {fits} rows per request, or "
            f"{self.limits.raise_with('explain_seconds', math.ceil(cost))}", status=413)

    async def run(self, columns: dict, rows: int) -> dict:
        self.check_budget(rows)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.explain_deadline_seconds
        try:
            await asyncio.wait_for(self.slots.acquire(), timeout=max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise self._late("waited for a free explanation worker") from None
        stop = threading.Event()
        self.busy_until = max(self.busy_until, time.monotonic()) + rows * self.per_row
        future = loop.run_in_executor(self.executor, self.explain, columns, stop.is_set)
        future.add_done_callback(lambda _: self.slots.release())  # the slot frees when the thread does
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            stop.set()
            future.add_done_callback(_consume)
            raise self._late("was explaining") from None
        except Stopped:  # pragma: no cover - only a set stop flag raises it, and that is the timeout's
            raise self._late("was explaining") from None

    def _late(self, doing: str) -> Unavailable:
        wait = max(1.0, self.busy_until - time.monotonic())
        return Unavailable(
            f"the explanation passed this service's deadline of {self.limits.explain_deadline_seconds:g} s while it "
            f"{doing}; retry after {math.ceil(wait)} s, send fewer rows, or "
            f"{self.limits.raise_with('explain_deadline_seconds', 2 * self.limits.explain_deadline_seconds)}",
            retry_after=math.ceil(wait))


def _consume(future) -> None:
    """Read an abandoned explanation's outcome, so its Stopped is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()
