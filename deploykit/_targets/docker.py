"""The docker target: each version runs in its own container behind a stable front container.

For a deployment named ``churn`` the engine holds:

* network ``deploykit-churn`` (bridge);
* ``deploykit-churn-front``: owns the published port and forwards to the current version;
* ``deploykit-churn-v<N>-<id>``: one container per running version, reachable by the front over the
  network and, for checks, on an ephemeral port of 127.0.0.1.

A new version starts beside the old one, must pass ``/readyz`` and a smoke prediction on its own port,
and only then does the front switch to it; the old version is stopped once no request is in flight to
it. Everything carries ``ai.deploykit.*`` labels, so ``deployments()`` rebuilds state from the engine.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .._docker.build import PORT, build_image, front_image
from .._docker.engine import LABEL, client as docker_client
from .._docker.hardening import run_options
from ..exceptions import ConfigError, DeploymentError
from .local import free_port, port_in_use

FRONT_PORT = 8080
UPSTREAM_FILE = "/tmp/deploykit-upstream.json"
_WRITE_UPSTREAM = (
    "import os, sys; p = sys.argv[1]; open(p + '.new', 'w').write(sys.argv[2]); os.replace(p + '.new', p)"
)


def _labels(name: str, role: str, **extra: str) -> dict:
    return {f"{LABEL}.managed": "true", f"{LABEL}.name": name, f"{LABEL}.role": role, **{f"{LABEL}.{k}": v for k, v in extra.items()}}


def _host_port(container, port: int) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    if not bindings:
        raise DeploymentError(f"container {container.name} publishes no port {port}", target="docker")
    return int(bindings[0]["HostPort"])


def _find(name: str, role: str) -> list:
    return docker_client().containers.list(all=True, filters={"label": [f"{LABEL}.name={name}", f"{LABEL}.role={role}"]})


def _remove(container) -> None:
    import docker

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass


class DockerVersion:
    """One version's container (and, once promoted, the deployment's front)."""

    target = "docker"

    def __init__(self, name: str, version: str, container, front=None, host: str = "127.0.0.1") -> None:
        self.name, self.version, self.container, self.front, self.host = name, version, container, front, host
        self.direct_url = f"http://127.0.0.1:{_host_port(container, PORT)}"

    @property
    def url(self) -> str:
        if self.front is None:
            return self.direct_url
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{shown}:{_host_port(self.front, FRONT_PORT)}"

    # -- starting ---------------------------------------------------------------------------------------
    @classmethod
    def start(cls, pkg: Any, *, name: str, port: int | None, image: Any = None, base_image: str | None = None,
              resources: dict | None = None, host: str = "127.0.0.1", verbose: bool = True,
              env: dict | None = None) -> DockerVersion:
        """Run ``image`` (built or reused for ``pkg`` when not given) as a new version of ``name``."""
        image = image or ensure_image(pkg, base_image=base_image, verbose=verbose)
        network = ensure_network(name)
        front = next(iter(_find(name, "front")), None)
        if front is None and port is not None and port_in_use(port):
            raise ConfigError(f"port {port} is already in use on this host; pass another port, or port=None for a free one")
        workers = int((env or {}).get("DEPLOYKIT_WORKERS") or pkg.manifest.get("serving", {}).get("workers", 1))
        container = docker_client().containers.run(
            image.tag,
            name=f"deploykit-{name}-v{pkg.version}-{secrets.token_hex(3)}",
            detach=True,
            init=True,
            network=network.name,
            ports={f"{PORT}/tcp": ("127.0.0.1", None)},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
            environment=env or {},
            **run_options(resources, role="model", workers=workers),  # issue 12: read-only, no capabilities, limits
            labels=_labels(name, "model", version=str(pkg.version), image=image.tag,
                           package=str(pkg.path), **{"model.sha256": pkg.manifest["artifacts"]["model"]["sha256"]}),
        )
        handle = cls(name, str(pkg.version), container, front, host)
        handle._requested_port = port
        return handle

    def promote(self, *, verbose: bool = True) -> None:
        """Route the name's traffic to this version, then retire the versions that served before."""
        upstream = json.dumps({"url": f"http://{self.container.name}:{PORT}", "version": self.version})
        if self.front is None:
            self.front = _start_front(self.name, getattr(self, "_requested_port", None), self.host, upstream, verbose)
        else:
            _exec(self.front, upstream)
        _await_front(self)
        for container in _find(self.name, "model"):
            if container.id != self.container.id:
                _drain(self.front, container.name)
                _remove(container)

    # -- the handle interface -------------------------------------------------------------------------
    def exited(self) -> int | None:
        import docker

        try:
            self.container.reload()
        except docker.errors.NotFound:
            return -1
        state = self.container.attrs["State"]
        if state["Status"] in ("exited", "dead") or state.get("Restarting"):
            return int(state.get("ExitCode", -1))
        return None

    def logs(self, tail: int | None = 200) -> str:
        import docker

        try:
            return self.container.logs(tail=tail if tail else "all").decode(errors="replace")
        except docker.errors.NotFound:
            return ""

    def discard(self) -> None:
        """Remove this version's container only (a release that failed its checks)."""
        _remove(self.container)

    def stop(self, timeout: float = 10.0) -> None:
        """Remove the whole deployment: every version, the front and the network."""
        for role in ("front", "model"):
            for container in _find(self.name, role):
                _remove(container)
        for network in docker_client().networks.list(filters={"label": [f"{LABEL}.name={self.name}"]}):
            try:
                network.remove()
            except Exception:
                pass

    def state(self) -> dict:
        return {"container": self.container.name, "front": self.front.name if self.front else None}


def ensure_image(pkg: Any, *, base_image: str | None, verbose: bool, on_line=None):
    """The package's image, built unless the engine has one of this model's exact artifact."""
    import docker

    from .._docker.build import Image

    tag = f"deploykit/{pkg.name}:{pkg.version}"
    try:
        found = docker_client().images.get(tag)
        if found.labels.get(f"{LABEL}.model.sha256") == pkg.manifest["artifacts"]["model"]["sha256"]:
            return Image(tag=tag, id=found.id, size=found.attrs["Size"], labels=found.labels,
                         deps_image=found.labels.get(f"{LABEL}.deps", ""), deps_reused=True, base_image="", seconds=0.0)
    except docker.errors.ImageNotFound:
        pass
    return build_image(pkg, base_image=base_image, tag=tag, verbose=verbose, on_line=on_line)


def ensure_network(name: str):
    client = docker_client()
    existing = client.networks.list(names=[f"deploykit-{name}"])
    if existing:
        return existing[0]
    return client.networks.create(f"deploykit-{name}", driver="bridge", labels=_labels(name, "network"))


def _exec(front, upstream: str) -> None:
    code, output = front.exec_run(["python", "-c", _WRITE_UPSTREAM, UPSTREAM_FILE, upstream])
    if code != 0:
        raise DeploymentError(f"could not switch the front of {front.name}: {output.decode()[-300:]}", target="docker")


def _start_front(name: str, port: int | None, host: str, upstream: str, verbose: bool):
    image = front_image(on_line=(lambda line: print(f"    {line}", flush=True)) if verbose else (lambda line: None), verbose=verbose)
    front = docker_client().containers.run(
        image,
        name=f"deploykit-{name}-front",
        detach=True,
        init=True,
        network=f"deploykit-{name}",
        ports={f"{FRONT_PORT}/tcp": (host, port or free_port())},
        restart_policy={"Name": "unless-stopped"},
        environment={"DEPLOYKIT_UPSTREAM_FILE": UPSTREAM_FILE},
        labels=_labels(name, "front", host=host),
        **run_options(role="front"),  # issue 12
    )
    deadline = time.monotonic() + 30
    while True:
        code, _ = front.exec_run(["python", "-c", _WRITE_UPSTREAM, UPSTREAM_FILE, upstream])
        if code == 0:
            return front
        if time.monotonic() > deadline:
            logs = front.logs(tail=30).decode(errors="replace")
            _remove(front)
            raise DeploymentError(f"the front container for {name} did not start:\n{logs}", target="docker")
        time.sleep(0.2)


def _await_front(handle: DockerVersion, timeout: float = 30.0) -> None:
    """Wait until the front answers and routes to ``handle``'s version."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = httpx.get(handle.url + "/_deploykit/front", timeout=2).json()
            if status["upstream"].get("version") == handle.version:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise DeploymentError(f"the front of {handle.name} did not switch to v{handle.version} within {timeout:.0f} s", target="docker")


def _drain(front, container_name: str, timeout: float = 30.0) -> None:
    """Wait until the front has no request in flight to ``container_name``."""
    import httpx

    url = f"http://127.0.0.1:{_host_port(front, FRONT_PORT)}/_deploykit/front"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            inflight = httpx.get(url, timeout=2).json()["inflight"]
        except (httpx.HTTPError, ValueError, KeyError):
            return
        if not any(container_name in upstream for upstream in inflight):
            return
        time.sleep(0.05)


def running(name: str | None = None) -> list[dict]:
    """Docker deployments as the engine knows them: name, front, current version container, package."""
    import httpx

    client = docker_client()
    filters = {"label": [f"{LABEL}.role=front"] + ([f"{LABEL}.name={name}"] if name else [])}
    found = []
    for front in client.containers.list(filters=filters):
        dep_name = front.labels[f"{LABEL}.name"]
        try:
            status = httpx.get(f"http://127.0.0.1:{_host_port(front, FRONT_PORT)}/_deploykit/front", timeout=3).json()
        except (httpx.HTTPError, ValueError):
            continue
        current = status["upstream"].get("url", "")
        for container in _find(dep_name, "model"):
            if container.name in current:
                found.append({"name": dep_name, "front": front, "container": container,
                              "version": container.labels[f"{LABEL}.version"],
                              "package": container.labels.get(f"{LABEL}.package"),
                              "host": front.labels.get(f"{LABEL}.host", "127.0.0.1")})
    return found
