"""Steady load for release tests: threads post the same rows in a loop and check every answer."""

from __future__ import annotations

import threading
import time

import httpx


class Hammer:
    """Sends ``/predict`` requests from ``threads`` threads until stopped, checking each response.

    A response counts as ok only if it is a 200 whose ``x-deploykit-version`` names a version in
    ``expected`` (when given) and whose predictions are exactly that version's expected answer; anything
    else, a non-200, or a transport error counts as failed, with its description kept in ``errors``.
    """

    def __init__(self, url: str, rows: list, *, expected: dict | None = None, threads: int = 2) -> None:
        self.url, self.rows, self.expected = url, rows, expected
        self.ok = self.failed = 0
        self.versions: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _check(self, response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return f"{response.status_code} {response.text[:120]}"
        version = response.headers.get("x-deploykit-version", "?")
        if self.expected is not None:
            if version not in self.expected:
                return f"answered by unexpected version {version!r}"
            if response.json()["predictions"] != self.expected[version]:
                return f"v{version} answered {response.json()['predictions'][:5]}..., not its model's predictions"
        return None

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", json={"instances": self.rows})
                    problem = self._check(response)
                except httpx.HTTPError as exc:
                    problem, response = repr(exc), None
                with self._lock:
                    if problem is None:
                        self.ok += 1
                        self.versions.append(response.headers.get("x-deploykit-version", "?"))
                    else:
                        self.failed += 1
                        self.errors.append(problem)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Block until at least ``count`` answers came back (the load is really flowing)."""
        deadline = time.monotonic() + timeout
        while self.ok + self.failed < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        self.wait_for(5)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
