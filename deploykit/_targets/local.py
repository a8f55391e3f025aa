"""The local target: versions are ``bentoml serve`` processes on this machine, behind a front process.

For a deployment named ``churn``, ``$DEPLOYKIT_HOME/deployments/churn/`` holds:

* ``front.json``: the front process (pid, address, admin token; readable by this user only). It exists
  while the deployment runs;
* ``routes.json``: the routing table the front serves (written by the front);
* ``logs/``: the front's log and each version's (kept after the deployment stops).

The front is started detached (its own session), and it starts the versions as its children
(:mod:`deploykit._front.supervisor`), so a deployment outlives the Python process that made it: any
process finds it through ``front.json``, uses it, and stops it. A machine reboot ends the processes;
the next ``deployments()`` notices the dead front and forgets it (the logs stay).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from .. import _paths
from .._logs import follow_file
from ..exceptions import ConfigError, DeploymentError
from .._security.audit import audit_key_path
from .base import Running
from .front import FrontClient, new_token

FRONT_START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
_OWNED: dict[int, subprocess.Popen] = {}  # fronts this process started, so their exit is reaped


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has exited)."""
    owned = _OWNED.get(pid)
    if owned is not None:
        return owned.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class LocalVersion:
    """A version process, as the front that supervises it describes it."""

    target = "local"

    def __init__(self, front: FrontClient, info: dict) -> None:
        self.front = front
        self.version, self.instance = str(info["version"]), info["instance"]
        self.port, self.pid, self.log_path = info["port"], info["pid"], Path(info["log"])
        self.upstream = self.direct_url = info["upstream"]
        self.package = info.get("package") or None
        self.started = info.get("started")

    def exited(self) -> int | None:
        try:
            info = self.front.call("GET", "versions", timeout=5).get(self.instance)
        except DeploymentError:
            return -1  # the front is gone, and its versions with it
        if info is None:
            return -1  # retired
        return None if info["alive"] else (info["exit_code"] if info["exit_code"] is not None else -1)

    def logs(self, tail: int | None = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-tail:] if tail else lines)

    def follow(self, tail: int = 10) -> Iterator[str]:
        return follow_file(self.log_path, tail, self.exited)

    def __repr__(self) -> str:
        return f"<LocalVersion {self.front.name} {self.instance} pid {self.pid} at {self.upstream}>"


class LocalTarget:
    """Processes on this machine."""

    name = "local"
    options: dict[str, Any] = {}
    stages: tuple[str, ...] = ()  # its own release stages, before "start"
    description = "processes on this machine: a front on the deployment's port, bentoml serve behind it"

    def check(self) -> None:
        """Nothing to check: this machine is always there."""

    def prepare(self, pkg: Any, options: dict, progress: Any) -> dict:
        if not pkg.bento_path.is_dir():
            raise ConfigError(f"the bento of {pkg.name} v{pkg.version} is missing ({pkg.bento_path}); package the model "
                              "again with deploykit.package(...)")
        return {}

    # -- the front ---------------------------------------------------------------------------------------
    def front(self, name: str) -> FrontClient | None:
        path = _paths.deployment_dir(name) / "front.json"
        try:
            state = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not pid_alive(state["pid"]):
            path.unlink(missing_ok=True)  # a reboot, or a killed front: forget it
            return None
        return FrontClient(name, state["url"], state["token"], admin_url=state["admin_url"], target=self.name,
                           details=state)

    def create_front(self, name: str, *, port: int | None, host: str, options: dict) -> FrontClient:
        if port is not None and port_in_use(port, host):
            raise ConfigError(f"port {port} on {host} is already in use; pass another port, or port=None for a free one")
        port = port or free_port()
        folder = _paths.deployment_dir(name)
        (folder / "logs").mkdir(exist_ok=True)
        (folder / "routes.json").unlink(missing_ok=True)  # a new front starts with no version
        token = new_token()
        log_path = folder / "logs" / "front.log"
        command = [sys.executable, "-I", "-m", "deploykit._front.serve", "--name", name, "--state-dir", str(folder),
                   "--host", host, "--port", str(port), "--supervise", "--audit-key", str(audit_key_path())]
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True,  # not in the notebook's process group: it outlives it
                                     env={**os.environ, "DEPLOYKIT_ADMIN_TOKEN": token})
        _OWNED[popen.pid] = popen
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        front = FrontClient(name, f"http://{shown}:{port}", token, admin_url=f"http://{shown}:{port}", target=self.name)
        try:
            front.wait_ready(FRONT_START_TIMEOUT, exited=lambda: popen.poll() is not None)
        except DeploymentError:
            popen.kill()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
            if "cannot listen" in tail:
                raise ConfigError(f"port {port} on {host} is already in use; pass another port, or port=None for a free "
                                  "one") from None
            raise DeploymentError(f"the front of {name} did not start; its log ({log_path}) ends:\n{tail}",
                                  target=self.name, logs=tail) from None
        front.details = {"pid": popen.pid, "port": port, "host": host, "url": front.url, "admin_url": front.admin_url,
                         "token": token, "started": time.time(), "log": str(log_path)}
        _write_private(folder / "front.json", front.details)
        return front

    # -- versions --------------------------------------------------------------------------------------
    def start(self, front: FrontClient, pkg: Any, *, env: dict, prepared: dict, options: dict) -> LocalVersion:
        instance = f"v{pkg.version}-{secrets.token_hex(3)}"
        info = front.call("POST", "versions", {"instance": instance, "version": pkg.version, "bento": str(pkg.bento_path),
                                               "env": env, "package": str(pkg.path)})
        return LocalVersion(front, info)

    def version(self, front: FrontClient, instance: str) -> LocalVersion | None:
        info = front.call("GET", "versions").get(instance)
        return LocalVersion(front, info) if info else None

    def retire(self, front: FrontClient, version: LocalVersion, *, drain: float) -> None:
        front.drain(version.upstream, drain)
        front.call("DELETE", f"versions/{version.instance}", {"timeout": 15}, timeout=30)

    def tidy(self, front: FrontClient) -> None:
        """Nothing to do: the front's supervisor removes the versions it stops."""

    # -- the deployment ------------------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        front = self.front(name)
        if front is None:
            return
        pid = front.details["pid"]
        try:
            front.call("POST", "shutdown", timeout=10)
        except DeploymentError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, 9)  # its versions die with it (PR_SET_PDEATHSIG)
        folder = _paths.deployment_dir(name)
        for leftover in ("front.json", "routes.json"):
            (folder / leftover).unlink(missing_ok=True)
        _OWNED.pop(pid, None)

    def running(self, name: str | None = None) -> list[Running]:
        names = [name] if name else sorted(p.name for p in _paths.deployment_dir().iterdir() if p.is_dir())
        found = []
        for each in names:
            front = self.front(each)
            if front is None:
                continue
            try:
                status = front.status()
            except DeploymentError:
                continue
            live = _live(front, status)
            found.append(Running(name=each, target=self.name, front=front, live=live,
                                 package=live.package if live else None,
                                 started=_iso(live.started if live else front.details.get("started"))))
        return found


def _live(front: FrontClient, status: dict) -> LocalVersion | None:
    routed = (status["routes"].get("live") or {}).get("instance")
    info = status.get("versions", {}).get(routed) if routed else None
    return LocalVersion(front, info) if info else None


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="seconds")


def _write_private(path: Path, data: dict) -> None:
    """Write a file only this user can read (it holds the admin token)."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle)
    os.replace(scratch, path)
