"""The local target's version processes, started and watched by the front process that routes to them.

Each version is a ``bentoml serve`` child of the front, on its own port of 127.0.0.1, with its log
in the deployment's ``logs/`` folder. The front is a detached process (its own session), so versions
outlive the Python process that deployed them. A version that dies while it has traffic is started
again, at most :data:`MAX_RESTARTS` times in :data:`RESTART_WINDOW` seconds (like Docker's
``on-failure`` policy); a version still being checked is not, so a broken release fails fast. Children
get ``PR_SET_PDEATHSIG``: if the front itself is killed, they end with it instead of holding ports.

BentoML starts each worker in a session of its own, so a worker outlives a server that is killed (a
crash, or the SIGKILL after a stop's grace period) and keeps its memory and the listening socket. The
front is therefore a child subreaper: such orphans become its children, and :func:`reap_orphans` ends
them before a version is started again on the same port.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
WATCH_SECONDS = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _become_subreaper() -> None:
    try:
        ctypes.CDLL("libc.so.6").prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass


def _children_of(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == parent:
            found.append(int(entry))
    return found


def reap_orphans(known: set[int]) -> list[int]:
    """End and reap this process's children that are not version servers (``known``): workers whose
    server died. Returns their pids."""
    ended = []
    for pid in _children_of(os.getpid()):
        if pid in known:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError, PermissionError):
            continue
        ended.append(pid)
    return ended


class Child:
    """One version's process, how to start it again, and its history."""

    def __init__(self, instance: str, version: str, bento: str, env: dict, log_dir: str, package: str = "") -> None:
        self.instance, self.version, self.bento, self.env, self.package = instance, version, bento, env, package
        self.port = free_port()
        self.log = os.path.join(log_dir, f"{instance}.log")
        self.started = time.time()
        self.popen: subprocess.Popen | None = None
        self.routed = False  # has traffic: restarted if it dies
        self.stopping = False
        self.restarts: list[float] = []
        self.exit_code: int | None = None

    @property
    def upstream(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "bentoml", "serve", self.bento, "--host", "127.0.0.1", "--port", str(self.port)]
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, preexec_fn=_die_with_parent, env=env)
        self.exit_code = None

    def poll(self) -> int | None:
        if self.popen is None:
            return self.exit_code
        code = self.popen.poll()
        if code is not None:
            self.exit_code = code
        return code

    async def stop(self, timeout: float = 15.0) -> None:
        self.stopping = True
        if self.popen is None or self.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.poll() is None:
            self._signal(signal.SIGKILL)
            while self.poll() is None:
                await asyncio.sleep(0.05)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # its own process group: the server's workers too
        except (ProcessLookupError, PermissionError):
            pass

    def describe(self) -> dict:
        return {"instance": self.instance, "version": self.version, "pid": self.popen.pid if self.popen else None,
                "port": self.port, "upstream": self.upstream, "log": self.log, "alive": self.poll() is None,
                "exit_code": self.exit_code, "routed": self.routed, "restarts": len(self.restarts),
                "package": self.package, "started": self.started}


class Supervisor:
    """The version processes of one local deployment, driven through the front's admin API."""

    def __init__(self, state_dir: str, front=None) -> None:
        self.log_dir = os.path.join(state_dir, "logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.front = front
        self.children: dict[str, Child] = {}
        self.shutdown = asyncio.Event()
        _become_subreaper()

    def reap(self) -> None:
        """End the workers of version servers that died (see the module's docstring)."""
        known = {child.popen.pid for child in self.children.values() if child.popen is not None and child.poll() is None}
        for pid in reap_orphans(known):
            print(f"deploykit front: ended worker {pid}, left behind by a version server that exited", flush=True)

    def describe(self) -> dict:
        return {instance: child.describe() for instance, child in self.children.items()}

    async def admin(self, method: str, what: str, payload: dict) -> tuple[int, dict] | None:
        """Answer an admin call about versions, or None when it is not one."""
        if (method, what) == ("POST", "versions"):
            return 200, self.start(Child(str(payload["instance"]), str(payload["version"]), str(payload["bento"]),
                                         dict(payload.get("env") or {}), self.log_dir, str(payload.get("package", ""))))
        if (method, what) == ("GET", "versions"):
            return 200, self.describe()
        if method == "DELETE" and what.startswith("versions/"):
            child = self.children.pop(what[len("versions/"):], None)
            if child is None:
                return 404, {"error": f"no instance {what[len('versions/'):]} runs here", "details": []}
            await child.stop(float(payload.get("timeout", 15)))
            self.reap()
            return 200, child.describe()
        if (method, what) == ("POST", "shutdown"):
            asyncio.get_running_loop().call_soon(self.shutdown.set)
            return 200, {"stopping": sorted(self.children)}
        return None

    def start(self, child: Child) -> dict:
        if child.instance in self.children:
            raise ValueError(f"instance {child.instance} already runs here; retire it first")
        child.start()
        self.children[child.instance] = child
        return child.describe()

    def routed(self, upstreams: set[str]) -> None:
        """The routing table changed: versions with traffic are the ones to keep alive."""
        for child in self.children.values():
            child.routed = child.upstream in upstreams

    async def watch(self) -> None:
        """Start again a routed version that died, within the restart budget."""
        while not self.shutdown.is_set():
            await asyncio.sleep(WATCH_SECONDS)
            now = time.monotonic()
            if any(child.poll() is not None for child in self.children.values()):
                self.reap()  # a server died: end its workers before a restart (they would hold its port)
            for child in list(self.children.values()):
                if child.stopping or not child.routed or child.poll() is None:
                    continue
                child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW]
                if len(child.restarts) >= MAX_RESTARTS:
                    continue
                child.restarts.append(now)
                print(f"deploykit front: v{child.version} exited with code {child.exit_code}; starting it again "
                      f"({len(child.restarts)} of {MAX_RESTARTS} in {RESTART_WINDOW:.0f} s)", flush=True)
                child.start()

    async def stop(self, instance: str) -> None:
        """Stop a version (a candidate that failed its guardrails, a live version replaced by the front)."""
        child = self.children.pop(instance, None)
        if child is not None:
            await child.stop()
            self.reap()

    async def stop_all(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.children.values()))
        self.children.clear()
        self.reap()
