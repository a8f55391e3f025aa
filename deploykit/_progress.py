"""Stage-by-stage progress for long operations.

Printed as each stage ends (notebook and terminal) when ``verbose``, and sent as events to an optional
listener (the deploy panel draws its stage display from them)::

    {"stage": "parity", "state": "start" | "done" | "failed", "detail": "...", "seconds": 1.2}
    {"log": "Step 3/9 : COPY code/ ..."}

A listener may raise :class:`KeyboardInterrupt` to cancel: the operation stops at the next stage or
build step and leaves nothing half-made behind.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable

Listener = Callable[[dict], None]


class Progress:
    def __init__(self, title: str, *, enabled: bool = True, listener: Listener | None = None) -> None:
        self.title, self.enabled, self.listener = title, enabled, listener
        self.stages: list[tuple[str, float]] = []
        self._start = time.perf_counter()

    def emit(self, event: dict) -> None:
        if self.listener is not None:
            self.listener(event)

    @contextmanager
    def stage(self, name: str, detail: str = ""):
        started = time.perf_counter()
        self.emit({"stage": name, "state": "start", "detail": detail, "seconds": 0.0})
        if self.enabled:
            print(f"  {name}{(': ' + detail) if detail else ''} …", end="", flush=True, file=sys.stdout)
        try:
            yield
        except BaseException:
            if self.enabled:
                print(" failed", flush=True)
            self.emit({"stage": name, "state": "failed", "detail": detail, "seconds": time.perf_counter() - started})
            raise
        elapsed = time.perf_counter() - started
        self.stages.append((name, elapsed))
        if self.enabled:
            print(f" done ({elapsed:.1f} s)", flush=True)
        self.emit({"stage": name, "state": "done", "detail": detail, "seconds": elapsed})

    def log(self, line: str) -> None:
        """A line of detail inside the current stage (e.g. a build step)."""
        if self.enabled:
            print(f"    {line}", flush=True)
        self.emit({"log": line})

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"  {text}", flush=True)
        self.emit({"log": text})

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
