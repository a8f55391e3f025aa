"""The swarm target: each version is a Docker Swarm service of N replicas, behind the deployment's front service.

For a deployment named ``churn`` the swarm holds:

* network ``deploykit-churn-swarm`` (overlay, attachable);
* service ``deploykit-churn-front``: the front (:mod:`deploykit._front`, the docker target's front image), one
  replica publishing the deployment's port in host mode; its state lives in
  ``$DEPLOYKIT_HOME/deployments/churn/``, bind-mounted at ``/var/lib/deploykit``;
* service ``deploykit-churn-v<N>-<id>``: one per running version, N replicas of the package's image in the
  ``dnsrr`` endpoint mode. The front's upstream for it is ``http://tasks.<service>:3000``: Swarm's DNS
  answers that name with the address of every replica that passed its health check (``/readyz``, the
  image's HEALTHCHECK), and the front resolves it every second and spreads the requests over them
  (:mod:`deploykit._front.resolve`).

What was measured on these machines decides the plumbing: the VIP endpoint mode and the ingress mesh need
IPVS, which the kernel lacks (VIP requests time out, ingress ports never listen), so services use ``dnsrr``
and the front publishes in host mode (so its port is open on every interface of the node: API keys are on
by default). Tasks are placed on this node, whose engine has the images (there is no registry to pull
from), and the control plane checks a new version's replicas through ``docker_gwbridge``, the bridge
every task is attached to besides its overlay network.

**A new version is a new service, not an update of the running one.** The release steps (start beside,
check ``/readyz`` and a smoke prediction, switch the front, retire the old) then hold on Swarm as on every
target, and so do shadow, canary and A/B, which need the candidate beside the live version, each with its
own replicas. Swarm's rolling update would replace replicas in place: both versions answering at random
during the update, no smoke prediction before traffic, no candidate, and Swarm's rollback as the only way
back. Swarm does what it is good at: it keeps N replicas running, restarts a replica that dies (at most 3
times a minute, like the local target) while the front sends its requests to the others, and
changes the replica count (``scale``). Every version's service carries a health-gated update
configuration (start-first, parallelism 1, rollback on failure, 5 s monitor), so an update of its service
(``docker service update --force`` to restart its replicas, say) never lowers capacity and rolls itself
back; the CLI exits 0 even then, and only the service's ``UpdateStatus`` says so. A change of the replica
count is not such an update (measured: no rolling update runs and ``UpdateStatus`` is reset), so ``scale``
waits for the count instead; deploykit itself runs no service update yet.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any, Iterator

from .. import _paths
from .._docker.build import PORT
from .._docker.engine import LABEL, client as docker_client
from .._docker.hardening import run_options
from .._logs import follow_chunks
from ..exceptions import ConfigError, DeploymentError, DockerUnavailableError
from .base import Running
from .docker import (FRONT_AUDIT_KEY, FRONT_PORT, FRONT_START_TIMEOUT, FRONT_STATE, ensure_image, front_parts,
                     labels_for)
from .front import FrontClient, new_token
from .local import free_port

DEFAULT_REPLICAS = 2
SECOND = 1_000_000_000  # the engine counts durations in nanoseconds
CONVERGE_TIMEOUT = 180.0
GATEWAY = "docker_gwbridge"
# A task in one of these states has ended; the others are on their way to running, or running.
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
# BentoML logs this and keeps its arbiter (so the container) alive when a worker cannot load the service.
STARTUP_FAILED = "Application startup failed"
# Nothing listens on the discard port: the address a version has before any of its replicas has one, when
# the release's health check reports why from the tasks' states and logs instead.
NO_ADDRESS = "http://127.0.0.1:9"


MAX_NAME = 40  # a service name is at most 63 characters: deploykit-NAME-v<version>-<id>


def _network(name: str) -> str:
    return f"deploykit-{name}-swarm"


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME:
        raise ConfigError(f"deployment name {name!r} has {len(name)} characters; on swarm a name has at most {MAX_NAME}, "
                          f"because a Swarm service name (deploykit-NAME-v<version>-<id>) is at most 63; "
                          f"deploy with name= a shorter one")


class SwarmVersion:
    """One version's service and its replicas (tasks)."""

    target = "swarm"

    def __init__(self, service) -> None:
        self.service = service
        spec = service.attrs["Spec"]
        labels = spec.get("Labels") or {}
        self.instance = spec["Name"]
        self.version = labels.get(f"{LABEL}.version", "?")
        self.package = labels.get(f"{LABEL}.package")
        self.started = service.attrs.get("CreatedAt")
        self.upstream = f"http://tasks.{self.instance}:{PORT}"  # every healthy replica, by Swarm's DNS

    @property
    def replicas(self) -> int:
        """How many replicas its service asks for."""
        self._reload()
        return int(self.service.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0))

    @property
    def direct_url(self) -> str:
        """A replica on this node, through ``docker_gwbridge``: where the control plane checks the version."""
        tasks = sorted(self.tasks() or [], key=lambda t: t["Status"]["State"] != "running")
        for task in tasks:
            if task["Status"]["State"] in ("running", "starting"):
                address = _gateway_address(task["Status"].get("ContainerStatus", {}).get("ContainerID"))
                if address:
                    return f"http://{address}:{PORT}"
        return NO_ADDRESS

    def tasks(self) -> list[dict] | None:
        """Its tasks (the replicas, and the ones that ended), or None once the service is gone."""
        import docker

        try:
            return self.service.tasks()
        except docker.errors.NotFound:
            return None

    def running(self) -> int:
        return sum(1 for t in self.tasks() or [] if t["Status"]["State"] == "running" and t["DesiredState"] == "running")

    def exited(self) -> int | None:
        """None while a replica runs, or while its first replicas are starting; else the exit code of the
        replica that ended last (-1 once the service is gone)."""
        tasks = self.tasks()
        if tasks is None:
            return -1
        if any(t["Status"]["State"] == "running" for t in tasks):
            return None
        ended = [t for t in tasks if t["Status"]["State"] in ENDED]
        if not ended:
            return None
        last = max(ended, key=lambda t: t["Status"]["Timestamp"])
        return int(last["Status"].get("ContainerStatus", {}).get("ExitCode", -1))

    def logs(self, tail: int | None = 200) -> str:
        """The replicas' log lines (each replica's last ``tail``, the newest replica last), then why Swarm ended any of
        its tasks. Read from each task's container, on this node: ``docker service logs`` without ``follow`` can hang
        on Docker 20.10 once a task has ended (measured here), and the release reads the logs then."""
        tasks = sorted(self.tasks() or [], key=lambda t: t["CreatedAt"])
        text = "".join(_container_logs(t.get("Status", {}).get("ContainerStatus", {}).get("ContainerID"), tail)
                       for t in tasks)
        problems = [f"swarm: task {t['ID'][:12]} {t['Status']['State']}: {t['Status']['Err']}"
                    for t in tasks if t["Status"].get("Err")]
        return text + "".join(f"{line}\n" for line in problems[-5:])

    def follow(self, tail: int = 10) -> Iterator[str]:
        return follow_chunks(self.service.logs(stdout=True, stderr=True, follow=True, tail=tail))

    def _reload(self) -> None:
        import docker

        try:
            self.service.reload()
        except docker.errors.NotFound:
            pass

    def __repr__(self) -> str:
        return f"<SwarmVersion {self.instance} ({self.upstream})>"


class SwarmTarget:
    """Services on a Docker Swarm (one node is enough: ``docker swarm init``)."""

    name = "swarm"
    options: dict[str, Any] = {"base_image": None, "resources": None, "replicas": None}
    stages: tuple[str, ...] = ("image",)
    description = ("services on a Docker Swarm: a front service on the port, a service of N replicas per version "
                   "(replicas=2)")
    capabilities = frozenset({"scale", "public-port"})

    def check(self) -> None:
        _node()

    def prepare(self, pkg: Any, options: dict, progress: Any) -> dict:
        _replicas(options.get("replicas"))  # a bad count fails before the image is built
        with progress.stage("image", "docker build (network off)"):
            image = ensure_image(pkg, base_image=options.get("base_image"), verbose=progress.enabled, on_line=progress.log)
        return {"image": image}

    # -- the front ---------------------------------------------------------------------------------------
    def front(self, name: str) -> FrontClient | None:
        for service in _services(name, "front"):
            if SwarmVersion(service).running():
                return _front_client(service)
        return None

    def create_front(self, name: str, *, port: int | None, host: str, options: dict) -> FrontClient:
        import docker.types as types

        _check_name(name)
        for stale in _services(name, "front"):
            _remove_services([stale])
        network, folder, user, image, key = front_parts(name, port, host, options, ensure_network)
        hardening = _hardened(run_options(role="front"))
        service = docker_client().services.create(
            image,
            ["python", "-m", "deploykit_front.serve", "--name", name, "--state-dir", FRONT_STATE,
             "--host", "0.0.0.0", "--port", str(FRONT_PORT), "--audit-key", FRONT_AUDIT_KEY],
            name=f"deploykit-{name}-front",
            env=[f"DEPLOYKIT_ADMIN_TOKEN={new_token()}"],
            networks=[network.id],
            endpoint_spec=types.EndpointSpec(mode="dnsrr", ports={port or free_port(): (FRONT_PORT, "tcp", "host")}),
            mode=types.ServiceMode("replicated", 1),
            restart_policy=types.RestartPolicy("any", delay=SECOND),
            update_config=types.UpdateConfig(parallelism=1, order="stop-first", failure_action="rollback",
                                             monitor=5 * SECOND),  # one port on the node: the old one stops first
            healthcheck=types.Healthcheck(interval=2 * SECOND, timeout=2 * SECOND, retries=3),
            constraints=[f"node.id=={_node()}"],
            labels=labels_for(name, "front", host=host),
            **{**hardening, "user": user, "mounts": [
                types.Mount(FRONT_STATE, str(folder), type="bind"),
                types.Mount(FRONT_AUDIT_KEY, str(key), type="bind", read_only=True), *hardening["mounts"]]},
        )
        front = _front_client(service)
        try:
            front.wait_ready(FRONT_START_TIMEOUT + 30, exited=lambda: SwarmVersion(service).exited() is not None)
        except BaseException:
            logs = SwarmVersion(service).logs(30)
            _remove_services([service])
            raise DeploymentError(f"the front service of {name} did not start:\n{logs}", target=self.name, logs=logs) from None
        return front

    # -- versions --------------------------------------------------------------------------------------
    def start(self, front: FrontClient, pkg: Any, *, env: dict, prepared: dict, options: dict) -> SwarmVersion:
        """A service of ``replicas`` replicas (default: as many as the live version has, else 2); returns once they
        all run (Swarm runs a task once its health check passed), or once one failed: then the release's health
        check reports why."""
        import docker.types as types

        image = prepared["image"]
        replicas = _replicas(options.get("replicas")) or self._live_replicas(front) or DEFAULT_REPLICAS
        workers = int(env.get("DEPLOYKIT_WORKERS") or pkg.manifest.serving.workers)
        service = docker_client().services.create(
            image.tag,
            name=f"deploykit-{front.name}-v{pkg.version}-{secrets.token_hex(3)}",
            env=[f"{key}={value}" for key, value in env.items()],
            networks=[_network(front.name)],
            endpoint_spec=types.EndpointSpec(mode="dnsrr"),
            mode=types.ServiceMode("replicated", replicas),
            restart_policy=types.RestartPolicy("on-failure", delay=SECOND, max_attempts=3, window=60 * SECOND),
            update_config=types.UpdateConfig(parallelism=1, delay=SECOND, order="start-first", failure_action="rollback",
                                             monitor=5 * SECOND, max_failure_ratio=0),
            rollback_config=types.RollbackConfig(parallelism=1, order="start-first", monitor=5 * SECOND),
            # the image's /readyz check, more often than its own 5 s, so a replica serves sooner
            healthcheck=types.Healthcheck(interval=2 * SECOND, timeout=3 * SECOND, retries=2, start_period=60 * SECOND),
            constraints=[f"node.id=={_node()}"],
            labels=labels_for(front.name, "model", version=str(pkg.version), image=image.tag, package=str(pkg.path),
                              **{"model.sha256": pkg.manifest.model.sha256}),
            **_hardened(run_options(options.get("resources"), role="model", workers=workers)),
        )
        version = SwarmVersion(service)
        try:
            _wait_started(version, replicas)
        except BaseException:
            _remove_services([service])
            raise
        return version

    def _live_replicas(self, front: FrontClient) -> int | None:
        live = (front.routes().get("live") or {}).get("instance")
        version = self.version(front, live) if live else None
        return version.replicas if version is not None else None

    def version(self, front: FrontClient, instance: str) -> SwarmVersion | None:
        import docker

        try:
            return SwarmVersion(docker_client().services.get(instance))
        except docker.errors.NotFound:
            return None

    def retire(self, front: FrontClient, version: SwarmVersion, *, drain: float) -> None:
        try:
            front.drain(version.upstream, drain)
        finally:
            _remove_services([version.service])

    def tidy(self, front: FrontClient) -> None:
        """Remove the services of versions the front stopped by itself (a candidate whose guardrail broke, a live
        version a canary replaced): no longer routed to, and none of their replicas is running or starting."""
        routes = front.routes()
        routed = {(routes.get(role) or {}).get("instance") for role in ("live", "candidate")}
        for service in _services(front.name, "model"):
            tasks = SwarmVersion(service).tasks() or []
            if service.name not in routed and tasks and all(t["Status"]["State"] in ENDED for t in tasks):
                _remove_services([service])

    def scale(self, front: FrontClient, version: SwarmVersion, replicas: int) -> None:
        """Run ``replicas`` replicas of ``version``; returns once exactly that many run (a new one serves once its
        health check passed; one stopped leaves Swarm's DNS, and the front retries on another replica a request it
        could not deliver to it)."""
        replicas = _replicas(replicas)
        _set_replicas(version.service, replicas)
        _converge(version, replicas)

    # -- the deployment ------------------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        _remove_services(_services(name, "front") + _services(name, "model"))
        client = docker_client()
        for network in client.networks.list(names=[_network(name)]):
            try:
                network.remove()
            except Exception:  # noqa: BLE001 - already gone
                pass
        (_paths.deployment_dir(name) / "routes.json").unlink(missing_ok=True)

    def running(self, name: str | None = None) -> list[Running]:
        found = []
        for service in _services(name, "front"):
            running = Running.behind(self, _front_client(service), extra=lambda version: {"replicas": version.replicas})
            if running is not None:
                found.append(running)
        return found


def _node() -> str:
    """This engine's node id, when it is a manager of an active swarm."""
    info = docker_client().info()
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise DockerUnavailableError("this Docker engine is not part of a swarm: run `docker swarm init` (one node is "
                                     "enough), or deploy with target='docker'")
    if not swarm.get("ControlAvailable"):
        raise DockerUnavailableError("this Docker engine is a swarm worker; deploy from a manager node "
                                     "(`docker node ls` there lists the managers)")
    return swarm["NodeID"]


def _replicas(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"replicas={value!r}: give a whole number of replicas, 1 or more (stop the deployment to "
                          "run none)")
    return value


def _services(name: str | None, role: str) -> list:
    labels = [f"{LABEL}.role={role}"] + ([f"{LABEL}.name={name}"] if name else [])
    return docker_client().services.list(filters={"label": labels})


def _front_client(service) -> FrontClient:
    spec = service.attrs["Spec"]
    labels = spec.get("Labels") or {}
    host = labels.get(f"{LABEL}.host", "127.0.0.1")
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    port = spec["EndpointSpec"]["Ports"][0]["PublishedPort"]
    env = dict(item.split("=", 1) for item in spec["TaskTemplate"]["ContainerSpec"].get("Env") or [] if "=" in item)
    return FrontClient(labels[f"{LABEL}.name"], f"http://{shown}:{port}", env.get("DEPLOYKIT_ADMIN_TOKEN", ""),
                       target="swarm", details={"service": service})


def _hardened(options: dict) -> dict:
    """The docker target's container hardening (:func:`run_options`) as service options: read-only root with size-capped
    tmpfs scratch, every capability dropped, a non-root user, memory, CPU and process-count limits. Swarm on Docker
    20.10 cannot set ``no-new-privileges`` nor a tmpfs's owner: the scratch folders are world-writable (sticky)."""
    import docker.types as types
    from docker.utils import parse_bytes

    resources = types.Resources(cpu_limit=options["nano_cpus"], mem_limit=parse_bytes(options["mem_limit"]))
    resources["Limits"]["Pids"] = options["pids_limit"]
    mounts = [types.Mount(path, None, type="tmpfs", tmpfs_size=_tmpfs_size(flags), tmpfs_mode=0o1777)
              for path, flags in options["tmpfs"].items()]
    return {"read_only": options["read_only"], "cap_drop": options["cap_drop"], "user": options["user"], "init": True,
            "resources": resources, "mounts": mounts}


def _tmpfs_size(flags: str) -> str:
    return next(part.partition("=")[2] for part in flags.split(",") if part.startswith("size="))


def _gateway_address(container_id: str | None) -> str | None:
    """The address of a task's container on ``docker_gwbridge``, which this host reaches."""
    if not container_id:
        return None
    import docker

    try:
        attached = docker_client().networks.get(GATEWAY).attrs.get("Containers") or {}
    except docker.errors.NotFound:
        return None
    found = attached.get(container_id) or {}
    return found.get("IPv4Address", "").split("/")[0] or None


def _set_replicas(service, replicas: int) -> None:
    """What ``docker service scale`` does: the service's own spec sent back with only the count changed, so Swarm
    starts or stops tasks and leaves the others alone. (The SDK's ``Service.scale`` sends a task template with
    defaults filled in, which Swarm takes for a change: a rolling restart of every replica, measured.)"""
    service.reload()
    spec = copy.deepcopy(service.attrs["Spec"])
    spec["Mode"]["Replicated"]["Replicas"] = replicas
    api = docker_client().api
    api._raise_for_status(api._post_json(api._url("/services/{0}/update", service.id), data=spec,
                                         params={"version": service.version}))


def _container_logs(container_id: str | None, tail: int | None) -> str:
    import docker

    if not container_id:
        return ""
    try:
        raw = docker_client().containers.get(container_id).logs(stdout=True, stderr=True, tail=tail if tail else "all")
    except docker.errors.NotFound:  # Swarm removed it (task history is kept longer than containers)
        return ""
    return raw.decode(errors="replace")


def _wait_started(version: SwarmVersion, replicas: int) -> None:
    """Until ``replicas`` replicas run, or one ended or could not load the package (the health check then says why)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while time.monotonic() < deadline:
        if version.running() >= replicas:
            return
        tasks = version.tasks() or []
        if any(t["Status"]["State"] in ENDED for t in tasks) or STARTUP_FAILED in version.logs(100):
            return
        time.sleep(0.25)


def _converge(version: SwarmVersion, replicas: int) -> None:
    """Until exactly ``replicas`` replicas run and none is still stopping; a DeploymentError after a while."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while time.monotonic() < deadline:
        tasks = version.tasks() or []
        stopping = [t for t in tasks if t["DesiredState"] != "running" and t["Status"]["State"] not in ENDED]
        if version.running() == replicas and not stopping:
            return
        time.sleep(0.25)
    raise DeploymentError(f"{version.instance} did not reach {replicas} running replicas within {CONVERGE_TIMEOUT:.0f} s "
                          f"({version.running()} run); its log:\n{version.logs(30)}", target="swarm", logs=version.logs(200))


def _remove_services(services: list) -> None:
    """Remove ``services`` and wait until their containers are gone (so their network can be removed next)."""
    import docker

    for service in services:
        try:
            service.remove()
        except docker.errors.NotFound:
            pass
    deadline = time.monotonic() + 30
    for service in services:
        # sparse: no inspect per container, which raised NotFound for one removed between the list and the inspect
        while time.monotonic() < deadline and docker_client().containers.list(
                all=True, sparse=True, filters={"label": f"com.docker.swarm.service.id={service.id}"}):
            time.sleep(0.2)


def ensure_network(name: str):
    """The deployment's overlay network (attachable, so a container run by hand can reach its replicas)."""
    client = docker_client()
    existing = client.networks.list(names=[_network(name)])
    if existing:
        return existing[0]
    return client.networks.create(_network(name), driver="overlay", attachable=True, labels=labels_for(name, "network"))
