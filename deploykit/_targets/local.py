"""The local target: ``bentoml serve`` of the package's bento as a child process on loopback."""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import _paths
from ..exceptions import ConfigError

_OWNED: dict[int, subprocess.Popen] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalProcess:
    """One ``bentoml serve`` process group, its port and its log file."""

    target = "local"

    def __init__(self, pid: int, port: int, log_path: Path, popen: subprocess.Popen | None = None) -> None:
        self.pid, self.port, self.log_path, self.popen = pid, port, Path(log_path), popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    direct_url = url

    def promote(self, *, verbose: bool = True) -> None:
        """Nothing to switch: a local version is reached at its own port."""

    def discard(self) -> None:
        self.stop()

    @classmethod
    def start(cls, bento_path: str, *, name: str, version: str, port: int | None, env: dict | None = None) -> LocalProcess:
        if port is None:
            port = free_port()
        elif port_in_use(port):
            raise ConfigError(f"port {port} on 127.0.0.1 is already in use; pass another port, or port=None for a free one")
        log_path = _paths.logs_dir() / f"{name}-v{version}-{port}.log"
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1", **(env or {})}
        command = [sys.executable, "-m", "bentoml", "serve", bento_path, "--host", "127.0.0.1", "--port", str(port)]
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends the workers too
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
                env=env,
            )
        _OWNED[popen.pid] = popen
        return cls(popen.pid, port, log_path, popen)

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        if self.popen is not None:
            return self.popen.poll()
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return -1
        except PermissionError:
            pass
        try:  # started by another process that has not reaped it yet: a zombie has exited
            if Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return -1
        except (OSError, IndexError):
            pass
        return None

    def logs(self, tail: int | None = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-tail:] if tail else lines)

    def stop(self, timeout: float = 15.0) -> None:
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            _OWNED.pop(self.pid, None)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.exited() is None:
            time.sleep(0.1)
        if self.exited() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.popen is not None:
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _OWNED.pop(self.pid, None)

    def state(self) -> dict:
        return {"pid": self.pid, "port": self.port, "log_path": str(self.log_path)}

    @classmethod
    def from_state(cls, state: dict) -> LocalProcess:
        return cls(state["pid"], state["port"], Path(state["log_path"]))


@atexit.register
def _stop_owned() -> None:
    for pid in list(_OWNED):
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
