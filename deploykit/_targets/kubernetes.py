"""``target="kubernetes"``: a cluster rolls versions out itself.

Here the platform does what the release steps do elsewhere: the Deployment's rolling update starts the
new pods beside the old ones, sends traffic to each only once its ``/readyz`` probe passes, and keeps
the old ReplicaSet serving when the new one never becomes ready (``progressDeadlineSeconds``). The
Service is the stable address. So this target has no front of deploykit's: it builds the image,
pushes it to the registry the user names, applies the manifests of :mod:`deploykit._kubernetes`
(server-side apply with the ``kubernetes`` client) and waits for the rollout, reading its state from
the Deployment's status (or the InferenceService's ``Ready`` condition with ``kind="kserve"``).

What it applied, where, and which image served each version is kept in the deployment's folder
(``kubernetes.json``), so a rollback or a stop from another process knows the cluster, the namespace
and the image. Nothing here has run against a live cluster: see ``docs/kubernetes.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from .. import _paths
from ..exceptions import ConfigError, DeployKitError, DeploymentError
from .base import Running

RECORD = "kubernetes.json"


@dataclass
class ClusterAddress:
    """Where a cluster deployment answers: stands where other targets have their front."""

    name: str
    url: str
    details: dict = field(default_factory=dict)


@dataclass
class ClusterVersion:
    """The version a cluster deployment serves; its pods are the cluster's to run."""

    name: str
    version: str
    url: str
    record: dict

    @property
    def instance(self) -> str:
        return f"{self.record['namespace']}/{self.name}:{self.version}"

    @property
    def upstream(self) -> str:
        return self.url

    direct_url = upstream

    def exited(self) -> int | None:
        return None

    def logs(self, tail: int | None = 200) -> str:
        from .._kubernetes import apply

        return apply.logs(self.name, self.record["namespace"], tail=tail or 1000, context=self.record["context"],
                          kubeconfig=self.record["kubeconfig"])

    def follow(self, tail: int = 10) -> Iterator[str]:
        yield from self.logs(tail).splitlines()


class KubernetesTarget:
    """A Kubernetes cluster reached through a kubeconfig context."""

    name = "kubernetes"
    options = {"context": None, "namespace": "default", "image": None, "replicas": 2, "kubeconfig": None,
               "kind": "kubernetes", "push": True, "ingress_host": None, "rollout_timeout": 600.0, "base_image": None}
    stages = ("image", "push", "apply", "rollout")
    description = "a Kubernetes cluster (or KServe): manifests applied with the kubernetes client, rolled out by it"
    capabilities = frozenset({"rolls-out"})  # the cluster replaces versions itself: deploy() calls roll_out()

    def check(self) -> None:
        try:
            import kubernetes  # noqa: F401
        except ImportError:
            raise ConfigError("target='kubernetes' needs the kubernetes client: pip install 'deploykit[kubernetes]'") from None

    # -- a release ------------------------------------------------------------------------------------------
    def roll_out(self, pkg: Any, *, name: str, options: dict, steps: Any) -> tuple[ClusterAddress, ClusterVersion]:
        """Build and push the image (unless ``push=False``: ``image`` is already in the registry), apply the
        manifests, and wait until the cluster has rolled the new version out. Raises
        :class:`DeploymentError` when it does not; the cluster then keeps the previous pods serving."""
        from .._kubernetes import apply
        from .._kubernetes.push import push_image, split_reference

        options = self._remembered(name, pkg, options)
        image = options["image"]
        if not image:
            raise ConfigError("target='kubernetes' needs image='REGISTRY/NAME:TAG': the reference the cluster pulls "
                              "(deploykit builds the image and pushes it there; push=False if it is there already)")
        split_reference(image)
        if options["push"]:
            from .docker import ensure_image

            with steps.stage("image", "docker build (network off)"):
                built = ensure_image(pkg, base_image=options["base_image"], verbose=steps.enabled, on_line=steps.log)
            with steps.stage("push", image):
                push_image(built.tag, image, on_line=steps.log)
        settings = {k: v for k, v in {"ingress_host": options["ingress_host"]}.items() if v is not None}
        client = apply.api_client(options["context"], options["kubeconfig"])
        with steps.stage("apply", f"{options['kind']} manifests in {options['namespace']} ({options['context'] or 'current context'})"):
            state = apply.apply(pkg, image=image, namespace=options["namespace"], replicas=int(options["replicas"]),
                                kind=options["kind"], client=client, on_line=steps.log, wait=False, **settings)
        with steps.stage("rollout", "until every replica of the new version is ready"):
            state = apply.watch(name, options["namespace"], kind=options["kind"], client=client,
                                timeout=float(options["rollout_timeout"]), on_line=steps.log, applied=state.applied)
        if not state.ok:
            raise DeploymentError(f"{name} v{pkg.version} did not roll out in {options['rollout_timeout']:.0f} s "
                                  f"({state!r}); the cluster keeps the previous pods serving. "
                                  f"`kubectl -n {options['namespace']} describe deployment {state.name}` shows why",
                                  target=self.name)
        record = self._record(name, pkg, options)
        address = ClusterAddress(name, _url(name, record), details={"rollout": repr(state)})
        return address, ClusterVersion(name, str(pkg.version), address.url, record)

    def _remembered(self, name: str, pkg: Any, given: dict) -> dict:
        """``given`` options, completed by what the last release of ``name`` used (a rollback names none);
        a version released before keeps its own image."""
        stored = _read(name)
        options = dict(given)
        for key in ("context", "namespace", "kubeconfig", "kind", "ingress_host", "replicas"):
            if key in stored and given.get(key) == self.options[key]:
                options[key] = stored[key]
        known = stored.get("images", {}).get(str(pkg.version))
        if not options["image"] and known:
            options["image"], options["push"] = known, False  # already in the registry
        return options

    def _record(self, name: str, pkg: Any, options: dict) -> dict:
        stored = _read(name)
        record = {key: options[key] for key in ("context", "namespace", "kubeconfig", "kind", "ingress_host", "replicas")}
        record.update(version=str(pkg.version), package=str(pkg.path),
                      images={**stored.get("images", {}), str(pkg.version): options["image"]},
                      started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        path = _paths.deployment_dir(name) / RECORD
        scratch = path.with_name(f".{RECORD}.{os.getpid()}")
        scratch.write_text(json.dumps(record, indent=1))
        os.replace(scratch, path)
        return record

    # -- what runs ------------------------------------------------------------------------------------------
    def front(self, name: str) -> ClusterAddress | None:
        record = _read(name)
        return ClusterAddress(name, _url(name, record)) if record else None

    def tidy(self, front: Any) -> None:
        """Nothing to do: the cluster removes old ReplicaSets' pods itself."""

    def remove(self, name: str) -> None:
        from .._kubernetes import apply

        record = _read(name)
        if not record:
            return
        apply.stop(name, record["namespace"], kind=record["kind"], context=record["context"],
                   kubeconfig=record["kubeconfig"])
        (_paths.deployment_dir(name) / RECORD).unlink(missing_ok=True)

    def running(self, name: str | None = None) -> list[Running]:
        """Deployments this machine rolled out, that their cluster still runs (unreachable ones are left out)."""
        from .._kubernetes import apply

        names = [name] if name else sorted(p.name for p in _paths.deployment_dir().iterdir() if (p / RECORD).exists())
        found = []
        for each in names:
            record = _read(each)
            if not record:
                continue
            try:
                state = apply.status(each, record["namespace"], kind=record["kind"], context=record["context"],
                                     kubeconfig=record["kubeconfig"])
            except (DeployKitError, OSError, Exception):  # noqa: BLE001 - an unreachable cluster hides it, not an error
                continue
            if state.state == "absent":
                continue
            address = ClusterAddress(each, _url(each, record), details={"rollout": repr(state)})
            found.append(Running(name=each, target=self.name, front=address,
                                 live=ClusterVersion(each, record["version"], address.url, record),
                                 package=record["package"], started=record.get("started")))
        return found


def _read(name: str) -> dict:
    try:
        return json.loads((_paths.deployment_dir(name) / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _url(name: str, record: dict) -> str:
    """The Ingress host when there is one; else the Service's address inside the cluster."""
    if record.get("ingress_host"):
        return f"http://{record['ingress_host']}"
    return f"http://{name.replace('_', '-')}.{record['namespace']}.svc.cluster.local"
