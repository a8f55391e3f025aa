"""``deploykit.deploy`` and the :class:`Deployment` it returns."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any, Callable

import numpy as np

from . import _paths
from ._client import Explanation, ServiceClient
from ._package import Package, package
from ._progress import Progress
from ._targets.local import LocalProcess
from .exceptions import ConfigError, DeploymentError, HealthCheckError, RequestError

TARGETS = ("local", "docker")
READY_TIMEOUT = 180.0
_LIVE: dict[str, Deployment] = {}


class Deployment:
    """A running service of one package version.

    Attributes
    ----------
    name, version, url, target : str
    package : Package
    """

    def __init__(self, pkg: Package, name: str, handle: Any, *, started: str | None = None) -> None:
        self.package, self.name, self.handle = pkg, name, handle
        self.version = pkg.version
        self.target = handle.target
        self.url = handle.url
        self.started = started or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.stopped = False
        self._client = ServiceClient(self.url)

    # -- calls ----------------------------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        """Labels (classifiers) or values (regressors) for the rows of ``X`` (DataFrame, array, dict(s))."""
        return np.asarray(self._post("/predict", X)["predictions"])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per class in ``self.classes`` order."""
        return np.asarray(self._post("/predict_proba", X)["probabilities"], dtype="float64")

    def explain(self, X: Any) -> Explanation:
        """SHAP values per row on the original columns; ``.top(k)`` gives the largest contributions."""
        return Explanation.from_json(self._post("/explain", X))

    def _post(self, path: str, X: Any) -> dict:
        if self.stopped:
            raise DeploymentError(
                f"{self.name} v{self.version} at {self.url} was stopped; deploykit.deployments() lists what is running",
                target=self.target,
            )
        return self._client.post(path, X)

    @property
    def card(self):
        """The deployed package's :class:`~deploykit.ModelCard`; the service serves it at ``/card``."""
        return self.package.card

    @property
    def classes(self) -> list | None:
        return self.package.manifest.get("classes")

    def schema(self) -> dict:
        """The JSON Schema of one request instance, as served at ``/schema``."""
        return self._client.get("/schema")

    def health(self) -> dict:
        """Whether the service process is alive and ready to answer."""
        exited = self.handle.exited()
        live = exited is None and self._client.ok("/livez")
        return {"live": live, "ready": live and self._client.ok("/readyz"), "url": self.url, "exit_code": exited}

    def logs(self, tail: int | None = 200) -> str:
        """The last ``tail`` lines of the service's log (all with ``tail=None``)."""
        return self.handle.logs(tail)

    def follow_logs(self, tail: int = 10):
        """Yield the last ``tail`` log lines, then each new line as the service writes it, until it stops.

        Local services are followed in their log file, docker ones in the container's log stream.
        """
        from ._logs import follow

        return follow(self.handle, tail)

    def stop(self) -> None:
        """Stop the service (for docker: remove its containers, front and network). Safe to call twice."""
        if self.stopped:
            return
        self.handle.stop()
        self._retire()
        _record(self.name, "stop", {"version": self.version, "target": self.target})

    def _retire(self) -> None:
        """Forget this object's service without touching processes: it was stopped or replaced."""
        self._client.close()
        self.stopped = True
        if _LIVE.get(self.name) is self:
            del _LIVE[self.name]
            _state_path(self.name).unlink(missing_ok=True)

    # -- display --------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        status = "stopped" if self.stopped else "running"
        return f"<Deployment {self.name} v{self.version} · {self.target} · {status} · {self.url}>"

    def _repr_html_(self) -> str:
        from ._display import deployment_html

        return deployment_html(self)


def deploy(
    model_or_package: Any,
    *,
    target: str = "local",
    name: str | None = None,
    port: int | None = None,
    base_image: str | None = None,
    resources: dict | None = None,
    host: str = "127.0.0.1",
    workers: int | None = None,
    verbose: bool = True,
    progress: Callable[[dict], None] | None = None,
    **package_kwargs: Any,
) -> Deployment:
    """Package a model (unless given a :class:`Package`) and start serving it.

    A deployment of the same name is replaced only once the new version is healthy and has answered
    a smoke prediction on sample rows; if the new version fails, the old one keeps serving and the
    error carries the new version's last log lines.

    Parameters
    ----------
    model_or_package : fitted estimator or Package
    target : {"local", "docker"}
        ``"local"`` runs ``bentoml serve`` as a child process on 127.0.0.1. ``"docker"`` builds the
        image if needed and runs it behind a stable front container that owns the port, so the URL
        survives new versions.
    name : str, optional
        Deployment name; defaults to the package's name. Required with a model.
    port : int, optional
        Port to listen on; a free one by default.
    workers : int, optional
        Server worker processes (each loads the model); defaults to the package's setting, 1.
    base_image, resources, host
        Docker only: the base image (see :meth:`Package.build_image`), limits such as
        ``{"memory": "2g", "cpus": 1.5}``, and the host address the port is published on.
    verbose : bool
        Print each stage as it ends.
    progress : callable, optional
        Receives stage and log events (capture … parity … bento, image, start, healthy, live); raising
        KeyboardInterrupt from it cancels, leaving any previous version serving.
    **package_kwargs
        Passed to :func:`deploykit.package` (``X_train``, ``y_train``, ``X_test``, ``y_test``, ``explain``,
        ``sensitive_features``, ``card``, ``profile``). ``profile`` applies to a Package too. Either way the
        deploy is refused (:class:`~deploykit.CardValidationError`) while the card has errors under the
        profile, or is stale: made for another model artifact, or evaluated on the training data.

    Examples
    --------
    >>> dep = deploykit.deploy(clf, name="churn", X_train=X_train, y_train=y_train)  # doctest: +SKIP
    >>> dep.explain(X_test[:1]).top(3)                                                # doctest: +SKIP
    """
    if target not in TARGETS:
        raise ConfigError(f"target {target!r} is not available; choose one of {', '.join(TARGETS)}")
    docker_options = {"base_image": base_image, "resources": resources, "host": host if host != "127.0.0.1" else None}
    if target == "local" and any(docker_options.values()):
        given = sorted(k for k, v in docker_options.items() if v)
        raise ConfigError(f"{given} apply to target='docker', not to target='local'")
    if target == "docker":
        from ._docker.engine import client

        client()  # fail fast, before packaging, when no engine answers
    # a profile also holds an existing Package's card to account, not only a card made now
    profile = package_kwargs.pop("profile", None) if isinstance(model_or_package, Package) else package_kwargs.get("profile")
    pkg = _resolve_package(model_or_package, name, verbose, progress, package_kwargs)
    signer = _verify_signature(pkg)
    _check_card(pkg, profile)
    name = _paths.check_name(name or pkg.name)
    previous = _LIVE.get(name) or _from_state(name) or _from_engine(name)
    started = time.perf_counter()
    steps = Progress(f"deploy {name}", enabled=verbose, listener=progress)
    image = None
    if target == "docker":
        from ._targets.docker import ensure_image

        with steps.stage("image", "docker build (network off)"):
            image = ensure_image(pkg, base_image=base_image, verbose=verbose, on_line=steps.log)
    with steps.stage("start", target):
        handle = _start(target, pkg, name, port, workers, image=image, resources=resources, host=host,
                        verbose=verbose)
    try:
        probe = ServiceClient(handle.direct_url)
        with steps.stage("healthy", "/readyz and a smoke prediction"):
            _wait_ready(handle, probe, name, pkg.version, listener=steps.emit)
            _smoke(handle, probe, name, pkg)
        with steps.stage("live", "routing traffic to the new version"):
            handle.promote(verbose=verbose)
    except BaseException:
        handle.discard()
        raise
    if previous is not None and not previous.stopped:
        if previous.target == target == "docker":
            previous._retire()  # its container is gone; the front and URL now serve the new version
        else:
            previous.stop()
    deployment = Deployment(pkg, name, handle)
    _LIVE[name] = deployment
    _state_path(name).write_text(json.dumps(_state(deployment)))
    from ._rollback import record_release

    record_release(deployment)
    _record(name, "deploy", {"version": pkg.version, "target": target, "url": deployment.url,
                             "package": str(pkg.path), "signed_by": signer})
    if verbose:
        print(f"  serving {name} v{pkg.version} at {deployment.url} ({target}, ready in {time.perf_counter() - started:.1f} s)")
    return deployment


def _verify_signature(pkg: Package) -> str:
    """Issue 12: the package folder and its bento must be exactly what a trusted key signed; the signer's key id."""
    from ._security.signing import verify_package

    return verify_package(pkg)


def _record(name: str, action: str, what: dict) -> None:
    """Issue 12: a deploy action in the deployment's audit log."""
    from ._security.audit import record_action

    record_action(name, action, what)


def _check_card(pkg: Package, profile: str | None) -> None:
    from ._card._attach import check_deployable

    check_deployable(pkg, profile)


def _resolve_package(model_or_package: Any, name: str | None, verbose: bool, progress, package_kwargs: dict) -> Package:
    if isinstance(model_or_package, Package):
        if package_kwargs:
            raise ConfigError(f"{sorted(package_kwargs)} apply when packaging a model, not to an existing Package")
        return model_or_package
    if name is None:
        raise ConfigError("name is required when deploying a model, e.g. deploy(model, name='churn', X_train=...)")
    if "X_train" not in package_kwargs:
        raise ConfigError("X_train is required to package a model: deploy(model, name=..., X_train=X_train, y_train=y_train)")
    return package(model_or_package, name=name, verbose=verbose, progress=progress, **package_kwargs)


def _start(target: str, pkg: Package, name: str, port: int | None, workers: int | None, **docker_options: Any):
    env = {"DEPLOYKIT_WORKERS": str(workers)} if workers else {}
    from ._security.signing import trusted_env

    env["DEPLOYKIT_TRUSTED_KEYS"] = trusted_env()  # issue 12: the runtime checks the signature at start
    if target == "docker":
        from ._targets.docker import DockerVersion

        return DockerVersion.start(pkg, name=name, port=port, env=env, **docker_options)
    return LocalProcess.start(pkg.manifest["bento"]["path"], name=name, version=pkg.version, port=port, env=env)


# BentoML logs this and keeps its arbiter alive when a worker cannot load the service.
_STARTUP_FAILED = "Application startup failed"


def _cause(logs: str) -> str:
    """The last exception line of a log, e.g. ``IntegrityError: artifact model.skops has ...``."""
    for line in reversed(logs.splitlines()):
        head, _, rest = line.strip().partition(":")
        if rest and head.endswith(("Error", "Exception")) and " " not in head:
            return f"{head.rsplit('.', 1)[-1]}:{rest}"
    return "see the log lines below"


def _wait_ready(handle: Any, probe: ServiceClient, name: str, version: str, timeout: float = READY_TIMEOUT,
                listener: Callable[[dict], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listener is not None:  # a heartbeat while waiting; a listener raising KeyboardInterrupt cancels
            listener({"heartbeat": "healthy", "seconds": timeout - (deadline - time.monotonic())})
        code = handle.exited()
        logs = handle.logs(None) if code is not None or _STARTUP_FAILED in handle.logs(400) else ""
        if code is not None or logs:
            what = f"exited with code {code}" if code is not None else "failed to start"
            raise DeploymentError(
                f"the service for {name} v{version} {what}: {_cause(logs)}; the previous version (if any) "
                f"keeps serving. Last log lines:\n{_tail(logs, 30)}",
                target=handle.target,
                logs=logs,
            )
        if probe.ok("/readyz", timeout=1.0):
            return
        time.sleep(0.2)
    raise HealthCheckError(
        f"{name} v{version} did not become ready within {timeout:.0f} s; the previous version (if any) keeps "
        f"serving. Last log lines:\n{handle.logs(30)}",
        target=handle.target,
        logs=handle.logs(200),
    )


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _smoke(handle: Any, probe: ServiceClient, name: str, pkg: Package) -> None:
    rows = pkg.sample_rows()
    if not rows:
        return
    try:
        predictions = probe.post("/predict", rows)["predictions"]
    except (RequestError, DeploymentError) as exc:
        raise HealthCheckError(
            f"{name} v{pkg.version} is up but failed a smoke prediction on {len(rows)} sample rows: {exc}; "
            f"the previous version (if any) keeps serving. Last log lines:\n{handle.logs(30)}",
            target=handle.target,
        ) from None
    if len(predictions) != len(rows):
        raise HealthCheckError(f"smoke prediction returned {len(predictions)} answers for {len(rows)} rows")


def _state_path(name: str):
    return _paths.state_dir() / f"{name}.json"


def _state(deployment: Deployment) -> dict:
    return {
        "name": deployment.name,
        "target": deployment.target,
        "package": str(deployment.package.path),
        "started": deployment.started,
        **deployment.handle.state(),
    }


def _from_state(name: str) -> Deployment | None:
    """A local deployment another Python process started (and is still running), from its state file."""
    path = _state_path(name)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if state.get("target", "local") != "local":
        return None
    handle = LocalProcess.from_state(state)
    if handle.exited() is not None:
        path.unlink(missing_ok=True)
        return None
    try:
        pkg = Package.load(state["package"])
    except Exception:
        return None
    deployment = Deployment(pkg, name, handle, started=state.get("started"))
    _LIVE[name] = deployment
    return deployment


def _docker_running(name: str | None = None) -> list[dict]:
    """What the Docker engine runs for deploykit (nothing when no engine answers)."""
    from ._docker.engine import available

    if not available():
        return []
    from ._targets.docker import running

    return running(name)


def _adopt(entry: dict) -> Deployment:
    """A Deployment object for a docker deployment found on the engine (e.g. after a kernel restart)."""
    from ._targets.docker import DockerVersion

    handle = DockerVersion(entry["name"], entry["version"], entry["container"], entry["front"], entry["host"])
    try:
        pkg = Package.load(entry["package"])
    except Exception:  # the package folder is not on this machine: the service describes itself
        pkg = Package(path=entry["package"], manifest=ServiceClient(handle.url).get("/info"))
    deployment = Deployment(pkg, entry["name"], handle, started=entry["container"].attrs.get("Created"))
    _LIVE[entry["name"]] = deployment
    return deployment


def _from_engine(name: str) -> Deployment | None:
    entries = _docker_running(name)
    return _adopt(entries[0]) if entries else None


def deployments() -> list[Deployment]:
    """Every running deployment: this process's, those other processes started, and docker deployments
    found on the engine by their labels (so the list survives a kernel restart), newest first."""
    for path in _paths.state_dir().glob("*.json"):
        if path.stem not in _LIVE:
            _from_state(path.stem)
    for entry in _docker_running():
        if entry["name"] not in _LIVE:
            _adopt(entry)
    for name, deployment in list(_LIVE.items()):
        if deployment.handle.exited() is not None:
            deployment.stopped = True
            del _LIVE[name]
            _state_path(name).unlink(missing_ok=True)
    return sorted(_LIVE.values(), key=lambda d: d.started, reverse=True)


def find(name: str) -> Deployment:
    """The running deployment called ``name``, whichever process started it."""
    running = deployments()
    for deployment in running:
        if deployment.name == name:
            return deployment
    names = ", ".join(d.name for d in running) or "none"
    raise ConfigError(f"no running deployment named {name!r} (running: {names}); deploy it first or check the spelling")
