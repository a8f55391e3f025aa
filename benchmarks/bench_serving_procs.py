"""Processes for the serving benchmark: free ports, process groups, first good answer, memory and CPU.

Every server runs in its own process group (``start_new_session``) and dies with the harness
(``PR_SET_PDEATHSIG``); :func:`stop_group` ends a group, and whatever is still registered when the
harness exits (normally or on SIGINT/SIGTERM) is killed too, so nothing is left running.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

_GROUPS: set[int] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(command: list[str], *, env: dict, cwd: str | Path, log_path: Path) -> subprocess.Popen:
    """Start ``command`` as the leader of a new process group, output to ``log_path``."""
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
    register_group(popen.pid)
    return popen


def register_group(pgid: int) -> None:
    """Remember a process group this harness is responsible for ending."""
    _GROUPS.add(pgid)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return any(_pgid(p) == pgid and p.status() != psutil.STATUS_ZOMBIE for p in psutil.process_iter())


def _pgid(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, psutil.Error):
        return None


def stop_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL whatever is left; reap our children."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        _GROUPS.discard(pgid)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_alive(pgid):
        _reap()
        time.sleep(0.1)
    if group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
    _reap()
    _GROUPS.discard(pgid)


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def stop_all() -> None:
    for pgid in list(_GROUPS):
        stop_group(pgid, timeout=5.0)


def _on_signal(signum, frame):  # SIGTERM stops the run like Ctrl-C: servers stopped, partial report written
    raise KeyboardInterrupt(f"signal {signum}")


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_signal)


# -- the process tree --------------------------------------------------------------------------------
def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_memory(pid: int) -> dict:
    """RSS summed over the process tree, the largest single process (a worker) and the process count, MiB."""
    sizes = []
    for process in tree(pid):
        try:
            sizes.append(process.memory_info().rss)
        except psutil.Error:
            pass
    mib = 1024 * 1024
    return {"rss_mib": sum(sizes) / mib, "largest_mib": max(sizes, default=0) / mib, "processes": len(sizes)}


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class MemorySampler:
    """Tree RSS of a server while load runs, sampled every ``interval`` seconds in a thread: ``peak``, and
    ``samples`` as (seconds since start, MiB)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval, self.peak, self.samples = pid, interval, 0.0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            rss = tree_memory(self.pid)["rss_mib"]
            self.samples.append((time.monotonic() - started, rss))
            self.peak = max(self.peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_memory(self.pid)["rss_mib"])


# -- HTTP probes -------------------------------------------------------------------------------------
def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """POST JSON; return (status, lower-cased headers, body). Connection errors raise OSError."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


class FirstAnswer(threading.Thread):
    """Polls ``POST url`` every ``interval`` s until a 2xx answer; ``.at`` is its ``time.monotonic()``."""

    def __init__(self, url: str, body: bytes, timeout: float, interval: float = 0.025) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.timeout, self.interval = url, body, timeout, interval
        self.at: float | None = None
        self.last_error = "no answer"
        self._cancelled = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._cancelled.is_set() and time.monotonic() < deadline:
            try:
                status, _, body = post(self.url, self.body, timeout=5.0)
                if 200 <= status < 300:
                    self.at = time.monotonic()
                    return
                self.last_error = f"HTTP {status}: {body[:200]!r}"
            except OSError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            self._cancelled.wait(self.interval)

    def cancel(self) -> None:
        self._cancelled.set()


def wait_first_answer(url: str, body: bytes, *, popen: subprocess.Popen, timeout: float) -> float:
    """Block until ``url`` answers 2xx; return the ``time.monotonic()`` of that answer.

    Raises RuntimeError when the process exits first or ``timeout`` passes.
    """
    poller = FirstAnswer(url, body, timeout)
    poller.start()
    while poller.is_alive():
        if popen.poll() is not None:
            poller.cancel()
            raise RuntimeError(f"the server exited with code {popen.returncode} before answering")
        poller.join(0.05)
    if poller.at is None:
        raise RuntimeError(f"no good answer from {url} within {timeout:.0f} s (last: {poller.last_error})")
    return poller.at


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
