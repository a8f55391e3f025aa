"""The docker target: each version runs in its own container, behind the deployment's front container.

For a deployment named ``churn`` the engine holds:

* network ``deploykit-churn`` (bridge);
* ``deploykit-churn-front``: the front (:mod:`deploykit._front`) owns the published port and forwards
  to the version its routing table names; its state (the routing table) lives in
  ``$DEPLOYKIT_HOME/deployments/churn/``, mounted at ``/var/lib/deploykit``;
* ``deploykit-churn-v<N>-<id>``: one container per running version, reachable by the front over the
  network and, for the control plane's checks, on an ephemeral port of 127.0.0.1.

Everything carries ``ai.deploykit.*`` labels, so ``deployments()`` rebuilds the picture from the
engine after a kernel restart; the front's admin token is in its container's environment.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Callable, Iterator

from .. import _paths
from .._docker.build import PORT, build_image, front_image
from .._docker.engine import LABEL, client as docker_client
from .._docker.hardening import run_options
from .._logs import follow_chunks
from ..exceptions import ConfigError, DeploymentError
from .base import Running
from .front import FrontClient, new_token
from .local import free_port, port_in_use

FRONT_PORT = 8080
FRONT_STATE = "/var/lib/deploykit"
FRONT_AUDIT_KEY = "/run/deploykit/audit.key"  # outside the state folder, read-only
FRONT_UID = 10001  # the image's user (see deploykit._docker.build.UID)
FRONT_START_TIMEOUT = 30.0


def labels_for(name: str, role: str, **extra: str) -> dict:
    return {f"{LABEL}.managed": "true", f"{LABEL}.name": name, f"{LABEL}.role": role,
            **{f"{LABEL}.{k}": v for k, v in extra.items()}}


def _host_port(container, port: int) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    if not bindings:
        raise DeploymentError(f"container {container.name} publishes no port {port}", target="docker")
    return int(bindings[0]["HostPort"])


def _find(name: str, role: str, *, all: bool = True) -> list:
    return docker_client().containers.list(all=all, filters={"label": [f"{LABEL}.name={name}", f"{LABEL}.role={role}"]})


def _remove(container) -> None:
    import docker

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass


def _env(container) -> dict:
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"] or [] if "=" in item)


class DockerVersion:
    """One version's container."""

    target = "docker"

    def __init__(self, container) -> None:
        self.container = container
        self.instance = container.name
        self.version = container.labels.get(f"{LABEL}.version", "?")
        self.package = container.labels.get(f"{LABEL}.package")
        self.started = container.attrs.get("Created")
        self.upstream = f"http://{container.name}:{PORT}"
        self.direct_url = f"http://127.0.0.1:{_host_port(container, PORT)}"

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

    def follow(self, tail: int = 10) -> Iterator[str]:
        return follow_chunks(self.container.logs(stream=True, follow=True, tail=tail))

    def __repr__(self) -> str:
        return f"<DockerVersion {self.instance} at {self.direct_url}>"


class DockerTarget:
    """Containers on a Docker engine."""

    name = "docker"
    options: dict[str, Any] = {"base_image": None, "resources": None}
    stages: tuple[str, ...] = ("image",)  # its own release stages, before "start"
    description = "containers on a Docker engine: a front container on the port, one container per version"

    def check(self) -> None:
        docker_client()  # fail fast, before packaging, when no engine answers

    def prepare(self, pkg: Any, options: dict, progress: Any) -> dict:
        with progress.stage("image", "docker build (network off)"):
            image = ensure_image(pkg, base_image=options.get("base_image"), verbose=progress.enabled, on_line=progress.log)
        return {"image": image}

    # -- the front ---------------------------------------------------------------------------------------
    def front(self, name: str) -> FrontClient | None:
        found = [c for c in _find(name, "front", all=False)]
        return _front_client(found[0]) if found else None

    def create_front(self, name: str, *, port: int | None, host: str, options: dict) -> FrontClient:
        for stale in _find(name, "front"):  # stopped, or made by an older deploykit without an admin API
            _remove(stale)
        network, folder, user, image, key = front_parts(name, port, host, options, ensure_network)
        token = new_token()
        container = docker_client().containers.run(
            image,
            ["python", "-m", "deploykit_front.serve", "--name", name, "--state-dir", FRONT_STATE,
             "--host", "0.0.0.0", "--port", str(FRONT_PORT), "--audit-key", FRONT_AUDIT_KEY],
            name=f"deploykit-{name}-front",
            detach=True,
            init=True,
            network=network.name,
            ports={f"{FRONT_PORT}/tcp": (host, port or free_port())},
            restart_policy={"Name": "unless-stopped"},
            environment={"DEPLOYKIT_ADMIN_TOKEN": token},
            volumes={str(folder): {"bind": FRONT_STATE, "mode": "rw"}, str(key): {"bind": FRONT_AUDIT_KEY, "mode": "ro"}},
            labels=labels_for(name, "front", host=host),
            **{**run_options(role="front"), "user": user},  # read-only, no capabilities; writes only its folder
        )
        front = _front_client(container)
        try:
            front.wait_ready(FRONT_START_TIMEOUT, exited=lambda: _state(container) in ("exited", "dead"))
        except DeploymentError:
            logs = container.logs(tail=30).decode(errors="replace")
            _remove(container)
            raise DeploymentError(f"the front container of {name} did not start:\n{logs}", target=self.name, logs=logs) from None
        return front

    # -- versions --------------------------------------------------------------------------------------
    def start(self, front: FrontClient, pkg: Any, *, env: dict, prepared: dict, options: dict) -> DockerVersion:
        image = prepared["image"]
        workers = int(env.get("DEPLOYKIT_WORKERS") or pkg.manifest.serving.workers)
        container = docker_client().containers.run(
            image.tag,
            name=f"deploykit-{front.name}-v{pkg.version}-{secrets.token_hex(3)}",
            detach=True,
            init=True,
            network=f"deploykit-{front.name}",
            ports={f"{PORT}/tcp": ("127.0.0.1", None)},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
            environment=env,
            **run_options(options.get("resources"), role="model", workers=workers),  # read-only, no capabilities, limits
            labels=labels_for(front.name, "model", version=str(pkg.version), image=image.tag, package=str(pkg.path),
                           **{"model.sha256": pkg.manifest.model.sha256}),
        )
        return DockerVersion(container)

    def version(self, front: FrontClient, instance: str) -> DockerVersion | None:
        import docker

        try:
            return DockerVersion(docker_client().containers.get(instance))
        except (docker.errors.NotFound, DeploymentError):
            return None

    def retire(self, front: FrontClient, version: DockerVersion, *, drain: float) -> None:
        try:
            front.drain(version.upstream, drain)
        finally:
            _remove(version.container)

    def tidy(self, front: FrontClient) -> None:
        """Remove the containers of versions the front stopped by itself (a candidate whose guardrail broke,
        a live version a canary replaced): no longer routed to, and exited."""
        routes = front.routes()
        routed = {(routes.get(role) or {}).get("instance") for role in ("live", "candidate")}
        for container in _find(front.name, "model"):
            if container.name not in routed and container.status in ("exited", "dead"):
                _remove(container)

    # -- the deployment ------------------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        for role in ("front", "model"):
            for container in _find(name, role):
                _remove(container)
        for network in docker_client().networks.list(filters={"label": [f"{LABEL}.name={name}"]}):
            try:
                network.remove()
            except Exception:  # noqa: BLE001 - already gone, or still draining its endpoints
                pass
        (_paths.deployment_dir(name) / "routes.json").unlink(missing_ok=True)

    def running(self, name: str | None = None) -> list[Running]:
        filters = {"label": [f"{LABEL}.role=front"] + ([f"{LABEL}.name={name}"] if name else [])}
        found = []
        for container in docker_client().containers.list(filters=filters):
            front = _front_client(container)
            if not front.token:
                continue  # made by an older deploykit: redeploying replaces it
            if (running := Running.behind(self, front)) is not None:
                found.append(running)
        return found


def _state(container) -> str:
    import docker

    try:
        container.reload()
    except docker.errors.NotFound:
        return "dead"
    return container.attrs["State"]["Status"]


def _front_client(container) -> FrontClient:
    name = container.labels[f"{LABEL}.name"]
    host = container.labels.get(f"{LABEL}.host", "127.0.0.1")
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{shown}:{_host_port(container, FRONT_PORT)}"
    return FrontClient(name, url, _env(container).get("DEPLOYKIT_ADMIN_TOKEN", ""), target="docker",
                       details={"container": container})


def front_parts(name: str, port: int | None, host: str, options: dict, network: Callable[[str], Any]) -> tuple:
    """What a new front needs on any Docker target: (its network, made by ``network(name)``; the deployment's
    folder, emptied of an old routing table and shared with the front's user; that user; the front image;
    the audit key's copy). Refuses a port already taken before anything is made."""
    if port is not None and port_in_use(port, host):
        raise ConfigError(f"port {port} is already in use on this host; pass another port, or port=None for a free one")
    made = network(name)
    folder = _paths.deployment_dir(name)
    (folder / "routes.json").unlink(missing_ok=True)
    user = share_folder(folder)
    image = front_image(base_image=options.get("base_image"), on_line=lambda line: None, verbose=False)
    return made, folder, user, image, front_audit_key(name, user)


def front_audit_key(name: str, user: str):
    """A copy of this machine's audit key the front container's user can read (mounted read-only, outside the
    deployment's folder): it signs the audit log's checkpoints there too."""
    from .._security.audit import audit_key_path

    source = audit_key_path()
    copy = source.with_name(f"front-{name}.key")
    copy.write_bytes(source.read_bytes())
    uid, gid = (int(part) for part in user.split(":"))
    os.chown(copy, uid, gid) if os.getuid() == 0 else None
    os.chmod(copy, 0o400)
    return copy


def share_folder(folder) -> str:
    """The user the front container runs as, with the deployment's folder writable by it: this user's
    own uid where that is not root, else the image's unprivileged user, given the folder."""
    if os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, FRONT_UID, FRONT_UID)
    return f"{FRONT_UID}:{FRONT_UID}"


def ensure_image(pkg: Any, *, base_image: str | None, verbose: bool, on_line=None):
    """The package's image, built unless the engine has one of this model's exact artifact from this package folder
    (the same artifact packaged in another folder, another ``DEPLOYKIT_HOME`` say, may be signed by a key this machine
    does not trust: the runtime would refuse it)."""
    import docker

    from .._docker.build import Image

    tag = f"deploykit/{pkg.name}:{pkg.version}"
    try:
        found = docker_client().images.get(tag)
        if (found.labels.get(f"{LABEL}.model.sha256") == pkg.manifest.model.sha256
                and found.labels.get(f"{LABEL}.package") == str(pkg.path)):
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
    return client.networks.create(f"deploykit-{name}", driver="bridge", labels=labels_for(name, "network"))

