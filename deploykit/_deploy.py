"""``deploykit.deploy`` and the :class:`Deployment` it returns."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import numpy as np

from . import _paths
from ._client import Explanation, ServiceClient
from ._package import Package, package
from ._targets.local import LocalProcess
from .exceptions import ConfigError, DeploymentError, HealthCheckError, RequestError

TARGETS = ("local",)
READY_TIMEOUT = 180.0
_LIVE: dict[str, Deployment] = {}


class Deployment:
    """A running service of one package version.

    Attributes
    ----------
    name, version, url, target : str
    package : Package
    """

    def __init__(self, pkg: Package, name: str, handle: LocalProcess, *, started: str | None = None) -> None:
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

    def stop(self) -> None:
        """Stop the service. Safe to call twice."""
        if self.stopped:
            return
        self.handle.stop()
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
    verbose: bool = True,
    **package_kwargs: Any,
) -> Deployment:
    """Package a model (unless given a :class:`Package`) and start serving it.

    A deployment of the same name is replaced only once the new one is healthy and has answered a
    smoke prediction on sample rows; if the new one fails, the old one keeps serving.

    Parameters
    ----------
    model_or_package : fitted estimator or Package
    target : {"local"}
        ``"local"`` runs ``bentoml serve`` as a child process on 127.0.0.1.
    name : str, optional
        Deployment name; defaults to the package's name. Required with a model.
    port : int, optional
        Port to listen on; a free one by default.
    **package_kwargs
        Passed to :func:`deploykit.package` (``X_train``, ``y_train``, ``X_test``, ``y_test``, ``explain``).

    Examples
    --------
    >>> dep = deploykit.deploy(clf, name="churn", X_train=X_train, y_train=y_train)  # doctest: +SKIP
    >>> dep.explain(X_test[:1]).top(3)                                                # doctest: +SKIP
    """
    if target not in TARGETS:
        raise ConfigError(f"target {target!r} is not available; choose one of {', '.join(TARGETS)}")
    if isinstance(model_or_package, Package):
        if package_kwargs:
            raise ConfigError(f"{sorted(package_kwargs)} apply when packaging a model, not to an existing Package")
        pkg = model_or_package
    else:
        if name is None:
            raise ConfigError("name is required when deploying a model, e.g. deploy(model, name='churn', X_train=...)")
        if "X_train" not in package_kwargs:
            raise ConfigError("X_train is required to package a model: deploy(model, name=..., X_train=X_train, y_train=y_train)")
        pkg = package(model_or_package, name=name, verbose=verbose, **package_kwargs)
    name = _paths.check_name(name or pkg.name)
    previous = _LIVE.get(name) or _from_state(name)
    started = time.perf_counter()
    handle = LocalProcess.start(pkg.manifest["bento"]["path"], name=name, version=pkg.version, port=port)
    deployment = Deployment(pkg, name, handle)
    try:
        _wait_ready(deployment)
        _smoke(deployment)
    except BaseException:
        deployment.stop()
        raise
    if previous is not None and not previous.stopped:
        previous.stop()
    _LIVE[name] = deployment
    _state_path(name).write_text(json.dumps(_state(deployment)))
    if verbose:
        print(f"  serving {name} v{pkg.version} at {deployment.url} (ready in {time.perf_counter() - started:.1f} s)")
    return deployment


# BentoML logs this and keeps its arbiter alive when a worker cannot load the service.
_STARTUP_FAILED = "Application startup failed"


def _cause(logs: str) -> str:
    """The last exception line of a log, e.g. ``IntegrityError: artifact model.skops has ...``."""
    for line in reversed(logs.splitlines()):
        head, _, rest = line.strip().partition(":")
        if rest and head.endswith(("Error", "Exception")) and " " not in head:
            return f"{head.rsplit('.', 1)[-1]}:{rest}"
    return "see the log lines below"


def _wait_ready(deployment: Deployment, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = deployment.handle.exited()
        if code is None and _STARTUP_FAILED in deployment.logs(None):
            logs = deployment.logs(None)
            raise DeploymentError(
                f"the service for {deployment.name} v{deployment.version} failed to start: {_cause(logs)}\n"
                f"Last log lines:\n{deployment.logs(30)}",
                target=deployment.target,
                logs=logs,
            )
        if code is not None:
            raise DeploymentError(
                f"the service for {deployment.name} v{deployment.version} exited with code {code} before it "
                f"was ready; its last log lines:\n{deployment.logs(30)}",
                target=deployment.target,
                logs=deployment.logs(200),
            )
        if deployment._client.ok("/readyz", timeout=1.0):
            return
        time.sleep(0.2)
    raise HealthCheckError(
        f"{deployment.name} v{deployment.version} did not become ready within {timeout:.0f} s; the previous "
        f"version (if any) keeps serving. Last log lines:\n{deployment.logs(30)}",
        target=deployment.target,
        logs=deployment.logs(200),
    )


def _smoke(deployment: Deployment) -> None:
    rows = deployment.package.sample_rows()
    if not rows:
        return
    try:
        predictions = deployment.predict(rows)
    except (RequestError, DeploymentError) as exc:
        raise HealthCheckError(
            f"{deployment.name} v{deployment.version} is up but failed a smoke prediction on {len(rows)} "
            f"sample rows: {exc}; the previous version (if any) keeps serving. Last log lines:\n{deployment.logs(30)}",
            target=deployment.target,
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
    """A deployment another Python process started (and is still running), from its state file."""
    path = _state_path(name)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
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


def deployments() -> list[Deployment]:
    """Every running deployment: this process's and those other processes started, newest first."""
    for path in _paths.state_dir().glob("*.json"):
        if path.stem not in _LIVE:
            _from_state(path.stem)
    for name, deployment in list(_LIVE.items()):
        if deployment.handle.exited() is not None:
            deployment.stopped = True
            del _LIVE[name]
            _state_path(name).unlink(missing_ok=True)
    return sorted(_LIVE.values(), key=lambda d: d.started, reverse=True)
