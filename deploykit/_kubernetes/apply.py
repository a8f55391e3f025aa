"""Applying a package's manifests to a cluster with the ``kubernetes`` client, and watching the rollout.

Every object goes as one server-side apply (``PATCH`` with ``application/apply-patch+yaml``, field
manager ``deploykit``, ``force``): the API server creates it when it is absent and patches it
otherwise, and fields deploykit stops writing are removed, as ``kubectl apply --server-side`` does.
The rollout is then read from the Deployment's status (or the InferenceService's Ready condition)
until it completes, fails (``ProgressDeadlineExceeded``), or ``timeout`` runs out.

Only request shape has been tested, against a recording fake API server: see docs/kubernetes.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..exceptions import ConfigError, DeploymentError
from . import manifests as _manifests

FIELD_MANAGER = "deploykit"
APPLY = "application/apply-patch+yaml"
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
POLL_SECONDS = 2.0
# kind -> (API class, method suffix)
_APIS = {
    "Deployment": ("AppsV1Api", "deployment"),
    "Service": ("CoreV1Api", "service"),
    "PodDisruptionBudget": ("PolicyV1Api", "pod_disruption_budget"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "horizontal_pod_autoscaler"),
    "Ingress": ("NetworkingV1Api", "ingress"),
}


@dataclass
class RolloutState:
    """Where a rollout stands: ``state`` is ``"complete"``, ``"progressing"``, ``"failed"`` or ``"absent"``."""

    name: str
    namespace: str
    state: str
    replicas: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    message: str = ""
    seconds: float = 0.0
    applied: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "complete"

    def __repr__(self) -> str:
        return (f"<RolloutState {self.namespace}/{self.name} {self.state} · {self.ready}/{self.replicas} ready · "
                f"{self.updated} updated{' · ' + self.message if self.message else ''}>")


def api_client(context: str | None = None, kubeconfig: str | None = None):
    """A client for ``context`` of ``kubeconfig`` (default: ``$KUBECONFIG`` or ``~/.kube/config``)."""
    from kubernetes import config

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, FileNotFoundError, OSError) as exc:
        raise ConfigError(f"no usable kubeconfig for context {context or '(current)'}: {exc}; point kubeconfig= "
                          "(or $KUBECONFIG) at a file with that context, as `kubectl config get-contexts` lists them") from None


def apply(package: Any, *, image: str, context: str | None = None, namespace: str = "default", replicas: int = 2,
          kind: str = "kubernetes", kubeconfig: str | None = None, timeout: float = 600, wait: bool = True,
          on_line: Callable[[str], None] | None = None, client: Any = None, **options) -> RolloutState:
    """Apply ``package``'s manifests in ``namespace`` of ``context``, then wait for the rollout.

    ``image`` must already be where the cluster pulls from (:func:`deploykit._kubernetes.push.push_image`).
    ``options`` are manifest settings (see :func:`deploykit.manifests`). Raises :class:`DeploymentError`
    when the API server refuses an object or the rollout fails; returns the final :class:`RolloutState`
    (``state="progressing"`` if ``wait`` is False or ``timeout`` ran out).
    """
    say = on_line or (lambda line: None)
    settings = _manifests.settings_for(package, image=image, namespace=namespace, replicas=replicas, **options)
    client = client or api_client(context, kubeconfig)
    started = time.monotonic()
    applied = []
    for doc in _manifests.documents(settings, kind):
        _server_side_apply(client, doc, namespace)
        applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
        say(f"applied {applied[-1]} in {namespace}")
    return watch(settings.app, namespace, kind=kind, client=client, timeout=timeout if wait else 0, on_line=on_line,
                 applied=applied, started=started)


def watch(name: str, namespace: str = "default", *, kind: str = "kubernetes", context: str | None = None,
          kubeconfig: str | None = None, client: Any = None, timeout: float = 600, on_line=None, applied=(),
          started: float | None = None) -> RolloutState:
    """Read the rollout of ``name`` until it completes, fails, or ``timeout`` runs out (0: read it once).

    Raises :class:`DeploymentError` when it failed; returns the last :class:`RolloutState` otherwise
    (``state="progressing"`` when time ran out).
    """
    say = on_line or (lambda line: None)
    client = client or api_client(context, kubeconfig)
    started = time.monotonic() if started is None else started
    app = name.replace("_", "-")
    read = _kserve_state if kind == "kserve" else _deployment_state
    state = read(client, app, namespace)
    while state.state == "progressing" and time.monotonic() - started < timeout:
        time.sleep(POLL_SECONDS)
        state = read(client, app, namespace)
        say(f"rollout: {state.ready}/{state.replicas} ready, {state.updated} updated")
    state.seconds, state.applied = time.monotonic() - started, list(applied)
    if state.state == "failed":
        raise DeploymentError(f"the rollout of {namespace}/{app} failed: {state.message}; "
                              f"`kubectl -n {namespace} describe deployment {app}` shows why", target="kubernetes")
    return state


def _server_side_apply(client, doc: dict, namespace: str) -> None:
    import urllib3
    from kubernetes import client as k8s

    name, kind = doc["metadata"]["name"], doc["kind"]
    common = {"body": doc, "field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
    try:
        if kind == "InferenceService":
            k8s.CustomObjectsApi(client).patch_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], name, **common)
        else:
            api, suffix = _APIS[kind]
            getattr(getattr(k8s, api)(client), f"patch_namespaced_{suffix}")(name, namespace, **common)
    except k8s.ApiException as exc:
        raise DeploymentError(f"the API server refused {kind}/{name} in namespace {namespace}: {exc.status} {exc.reason}: "
                              f"{_reason(exc)}", target="kubernetes") from None
    except urllib3.exceptions.HTTPError as exc:  # no answer at all: the cluster is not reachable
        raise DeploymentError(f"cannot reach the Kubernetes API at {client.configuration.host}: {exc}",
                              target="kubernetes") from None


def _reason(exc) -> str:
    import json

    try:
        return json.loads(exc.body).get("message", exc.body)
    except (TypeError, ValueError):
        return str(exc.body)


def status(name: str, namespace: str = "default", *, kind: str = "kubernetes", context: str | None = None,
           kubeconfig: str | None = None, client: Any = None) -> RolloutState:
    """The rollout state of a deployment applied by :func:`apply` (``"absent"`` if there is none)."""
    client = client or api_client(context, kubeconfig)
    app = name.replace("_", "-")
    return (_kserve_state if kind == "kserve" else _deployment_state)(client, app, namespace)


def _deployment_state(client, app: str, namespace: str) -> RolloutState:
    from kubernetes import client as k8s

    try:
        dep = k8s.AppsV1Api(client).read_namespaced_deployment_status(app, namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return RolloutState(app, namespace, "absent", message="no such Deployment")
        raise
    spec, st = dep.spec, dep.status
    state = RolloutState(app, namespace, "progressing", replicas=spec.replicas or 0, updated=st.updated_replicas or 0,
                         ready=st.ready_replicas or 0, available=st.available_replicas or 0)
    for condition in st.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            state.state, state.message = "failed", condition.message or condition.reason
            return state
    current = (st.observed_generation or 0) >= (dep.metadata.generation or 0)
    settled = (st.replicas or 0) == state.updated  # no pod of the old version left
    if current and settled and state.updated == state.replicas and state.available == state.replicas:
        state.state = "complete"
    return state


def _kserve_state(client, app: str, namespace: str) -> RolloutState:
    from kubernetes import client as k8s

    try:
        isvc = k8s.CustomObjectsApi(client).get_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], app)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return RolloutState(app, namespace, "absent", message="no such InferenceService")
        raise
    conditions = {c.get("type"): c for c in (isvc.get("status") or {}).get("conditions", [])}
    ready = conditions.get("Ready", {})
    replicas = isvc["spec"]["predictor"].get("minReplicas", 1)
    if ready.get("status") == "True":
        return RolloutState(app, namespace, "complete", replicas=replicas, updated=replicas, ready=replicas, available=replicas)
    # KServe reports Ready=False while a rollout is still under way, so only the timeout ends the wait
    return RolloutState(app, namespace, "progressing", replicas=replicas,
                        message=ready.get("message") or ready.get("reason") or "")


def stop(name: str, namespace: str = "default", *, kind: str = "kubernetes", context: str | None = None,
         kubeconfig: str | None = None, client: Any = None) -> list[str]:
    """Delete what :func:`apply` made (missing objects are skipped); returns ``Kind/name`` of each deleted."""
    from kubernetes import client as k8s

    client = client or api_client(context, kubeconfig)
    app, deleted = name.replace("_", "-"), []
    kinds = ["InferenceService"] if kind == "kserve" else ["Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                                          "Service", "Deployment"]
    for kind_name in kinds:
        try:
            if kind_name == "InferenceService":
                k8s.CustomObjectsApi(client).delete_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], app)
            else:
                api, suffix = _APIS[kind_name]
                getattr(getattr(k8s, api)(client), f"delete_namespaced_{suffix}")(app, namespace)
            deleted.append(f"{kind_name}/{app}")
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise DeploymentError(f"deleting {kind_name}/{app} in {namespace} failed: {exc.status} {_reason(exc)}",
                                      target="kubernetes") from None
    return deleted


def logs(name: str, namespace: str = "default", *, tail: int = 50, context: str | None = None,
         kubeconfig: str | None = None, client: Any = None) -> str:
    """The last ``tail`` lines of each pod of the deployment, each block headed by its pod's name."""
    from kubernetes import client as k8s

    client = client or api_client(context, kubeconfig)
    app = name.replace("_", "-")
    core = k8s.CoreV1Api(client)
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={app}").items
    blocks = []
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        text = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=tail)
        blocks.append(f"==> {pod.metadata.name} <==\n{text.rstrip()}")
    return "\n".join(blocks)
