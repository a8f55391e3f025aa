"""Stage-by-stage progress for long operations, printed as each stage ends (notebook and terminal)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class Progress:
    def __init__(self, title: str, *, enabled: bool = True) -> None:
        self.title, self.enabled = title, enabled
        self.stages: list[tuple[str, float]] = []
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str, detail: str = ""):
        started = time.perf_counter()
        if self.enabled:
            print(f"  {name}{(': ' + detail) if detail else ''} …", end="", flush=True, file=sys.stdout)
        try:
            yield
        except BaseException:
            if self.enabled:
                print(" failed", flush=True)
            raise
        elapsed = time.perf_counter() - started
        self.stages.append((name, elapsed))
        if self.enabled:
            print(f" done ({elapsed:.1f} s)", flush=True)

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"  {text}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
