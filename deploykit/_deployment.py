"""The :class:`Deployment` object, and finding what runs: ``deploykit.deployments()``.

What runs is read from the targets each time (the local fronts' records, the Docker engine's labels),
so a deployment another process started, or a restarted kernel's, is found like this process's own.
Objects this process made are reused while they still describe what runs; one whose version was
replaced or stopped is marked stopped.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import numpy as np

from . import _targets
from ._client import Explanation, ServiceClient
from ._package import Package
from ._security.audit import record_action
from ._security.keys import client_token
from .exceptions import ConfigError, DeployKitError, DeploymentError

_LIVE: dict[str, Deployment] = {}


class Deployment:
    """A deployment: a name with a stable URL, and the package version it serves now.

    Attributes
    ----------
    name, version, url, target : str
    package : Package
    handle
        The running version (a process or a container), as its target describes it.
    """

    def __init__(self, pkg: Package, name: str, target: str, front: Any, handle: Any, *, started: str | None = None) -> None:
        self.package, self.name, self.target, self.front, self.handle = pkg, name, target, front, handle
        self.version = pkg.version
        self.url = front.url
        self.started = started or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.stopped = False
        self._client = ServiceClient(self.url, token=client_token(name))

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
                f"{self.name} v{self.version} at {self.url} was stopped or replaced; deploykit.deployments() lists "
                "what is running", target=self.target)
        return self._client.post(path, X)

    @property
    def card(self):
        """The deployed package's :class:`~deploykit.ModelCard`; the service serves it at ``/card``."""
        return self.package.card

    @property
    def classes(self) -> list | None:
        return self.package.manifest.classes

    def schema(self) -> dict:
        """The JSON Schema of one request instance, as served at ``/schema``."""
        return self._client.get("/schema")

    def health(self) -> dict:
        """Whether the service is alive and ready to answer (through its stable URL)."""
        exited = self.handle.exited() if not self.stopped else -1
        live = exited is None and self._client.ok("/livez")
        return {"live": live, "ready": live and self._client.ok("/readyz"), "url": self.url, "exit_code": exited}

    def status(self) -> dict:
        """What ``deploykit status`` shows: version, target, URL, health, package, model, parity, card."""
        health, m = self.health(), self.package.manifest
        card = m.card or {}
        return {
            "name": self.name, "version": self.version, "target": self.target, "url": self.url,
            "live": health["live"], "ready": health["ready"], "started": self.started, "package": str(self.package.path),
            "model": f"{m.estimator.rsplit('.', 1)[-1]} ({m.task})",
            "parity": self.package.parity_summary() if m.parity else None,
            "card": f"{card.get('errors', 0)} errors, {card.get('warnings', 0)} warnings "
                    f"({card.get('profile') or 'internal'})" if card else None,
            **({"replicas": self.handle.replicas} if hasattr(self.handle, "replicas") else {}),
        }

    @property
    def candidate(self) -> str | None:
        """The version of the candidate running beside the live one (a shadow, canary or A/B), or None."""
        found = self.front.routes().get("candidate")
        return found["version"] if found else None

    def compare(self):
        """The live version and the candidate side by side, on real traffic: a :class:`Comparison` with
        ``to_dict()``, an HTML display with plots, and ``str()``.

        For each variant: requests, errors, p50 and p99, and the distribution of its predictions; for a
        shadow or a canary, the requests both answered, joined by request id: label agreement and score
        differences; a canary's steps and any guardrail that broke; every action with its time and reason.

        Examples
        --------
        >>> deploykit.deploy(pkg2, name="churn", strategy="shadow")   # doctest: +SKIP
        >>> deploykit.deployments()[0].compare().to_dict()["paired"]  # doctest: +SKIP
        {'requests': 412, 'rows': 412, 'agreement': 0.93, ...}
        """
        from ._compare import compare

        return compare(self)

    def monitor(self, window: Any = None):
        """Drift and live performance of what this deployment answered, against the package's reference.

        Parameters
        ----------
        window : int, str, tuple or dict, optional
            The last N captured rows (``600``), a duration back from now (``"1h"``), a ``(start, end)``
            pair of epoch seconds, or None for everything captured.

        Returns
        -------
        MonitorReport
            ``to_dict()`` has ``window``, ``features``, ``prediction``, ``verdict`` and ``performance``
            (None until outcomes are logged); in a notebook it shows the distributions, drifted features first.

        Examples
        --------
        >>> dep.monitor(600).to_dict()["verdict"]        # doctest: +SKIP
        {'drift': False, 'status': 'ok', 'reasons': [], ...}
        """
        from . import _paths
        from ._monitor import monitor

        report = monitor(self.package, _paths.deployment_dir(self.name), window=window)
        report.write_prometheus(_paths.deployment_dir(self.name))  # the front serves the gauges at /metrics
        return report

    def log_outcomes(self, request_ids: list, y_true: list) -> int:
        """Record the true labels of answered requests, by the ``x-request-id`` each answer carried
        (``"ID#ROW"`` addresses a row other than the first); returns how many rows were labelled.
        ``Deployment.monitor`` then reports live performance."""
        from . import _paths
        from ._monitor.store import CaptureStore

        return CaptureStore(_paths.deployment_dir(self.name)).log_outcomes(list(request_ids), list(y_true))

    def audit(self):
        """The deployment's audit trail as a DataFrame, one row per record, oldest first: deploy actions (who,
        when, what) and one row per prediction request (its id, version, API key, and the sha256 of its input
        and output, never the values). ``deploykit audit verify NAME`` checks the chain."""
        from ._security.audit import frame

        return frame(self.name)

    def logs(self, tail: int | None = 200) -> str:
        """The last ``tail`` lines of the live version's log (all with ``tail=None``)."""
        return self.handle.logs(tail)

    def follow_logs(self, tail: int = 10):
        """Yield the last ``tail`` log lines, then each new line as the service writes it, until it stops."""
        return self.handle.follow(tail)

    def scale(self, replicas: int) -> Deployment:
        """Run ``replicas`` copies of the live version behind the deployment's URL, on a target that scales (swarm).

        Returns once exactly that many serve: a new replica gets requests once its health check passed, and
        the front retries on another replica a request it could not deliver to one taken away (no request
        failed under load in the tests). Later versions
        start with the same count unless ``deploy(..., replicas=N)`` says otherwise.

        Examples
        --------
        >>> dep = deploykit.deploy(pkg, target="swarm", replicas=2)   # doctest: +SKIP
        >>> dep.scale(3).status()["replicas"]                          # doctest: +SKIP
        3
        """
        target = _targets.get(self.target)
        if not _targets.can(target, "scale"):
            raise ConfigError(f"{self.name} runs on target {self.target!r}, which runs one copy of each version and "
                              f"cannot scale; deploy it with target= one of {_targets.able('scale')} to run replicas")
        target.scale(self.front, self.handle, replicas)
        record_action(self.name, "scale", {"version": self.version, "replicas": replicas})
        return self

    def stop(self) -> None:
        """Stop the deployment: every version and its front. Safe to call twice."""
        if self.stopped:
            return
        _targets.get(self.target).remove(self.name)
        self._retire()
        record_action(self.name, "stop", {"version": self.version, "target": self.target})

    def _retire(self) -> None:
        """Forget this object's service without touching it: it was stopped or replaced."""
        self._client.close()
        self.stopped = True
        if _LIVE.get(self.name) is self:
            del _LIVE[self.name]

    # -- display --------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        status = "stopped" if self.stopped else "running"
        return f"<Deployment {self.name} v{self.version} · {self.target} · {status} · {self.url}>"

    def _repr_html_(self) -> str:
        from ._display import deployment_html

        return deployment_html(self)


def adopt(pkg: Package, name: str, target: str, front: Any, handle: Any, started: str | None = None) -> Deployment:
    """The Deployment object of what now runs under ``name``, replacing (and retiring) an older object."""
    current = _LIVE.get(name)
    if current is not None and not current.stopped and current.handle.instance == handle.instance:
        return current
    if current is not None:
        current._retire()
    deployment = Deployment(pkg, name, target, front, handle, started=started)
    _LIVE[name] = deployment
    return deployment


def package_of(found) -> Package:
    """The package a running version serves; the service describes itself when its folder is not here."""
    try:
        return Package.load(found.package)
    except (DeployKitError, OSError, TypeError, ValueError):
        from ._runtime.manifest import Manifest

        return Package(path=found.package or "", manifest=Manifest.from_dict(
            ServiceClient(found.front.url, token=client_token(found.name)).get("/info")))


def _running(name: str | None = None) -> list:
    found = []
    for target_name in _targets.names():
        target = _targets.get(target_name)
        try:
            target.check()
            running = target.running(name)
        except DeployKitError:
            continue  # e.g. no Docker engine answers: nothing runs there that we could reach
        for each in running:
            target.tidy(each.front)  # versions the front stopped by itself (a guardrail, a canary's promotion)
        found += running
    return found


def deployments() -> list[Deployment]:
    """Every running deployment, whichever process started it, newest first.

    Local deployments are found through their fronts' records under the deploykit home, docker ones
    through the engine's labels, so the list survives a kernel restart.
    """
    seen = set()
    for found in _running():
        if found.live is None:
            continue
        seen.add(found.name)
        adopt(package_of(found), found.name, found.target, found.front, found.live, started=found.started)
    for name in [n for n in _LIVE if n not in seen]:
        _LIVE[name]._retire()
    return sorted(_LIVE.values(), key=lambda d: d.started or "", reverse=True)


def find(name: str) -> Deployment:
    """The running deployment called ``name``, whichever process started it."""
    for found in _running(name):
        if found.live is not None:
            return adopt(package_of(found), found.name, found.target, found.front, found.live, started=found.started)
    names = ", ".join(d.name for d in deployments()) or "none"
    raise ConfigError(f"no running deployment named {name!r} (running: {names}); deploy it first or check the spelling")



def card_of(name: str, saved: Callable[[str], Package] | None = None, version: str | None = None) -> tuple[Any, str]:
    """The model card of the running deployment ``name`` (unless a ``version`` is asked for), else of the
    saved package ``name`` (found by ``saved``, :meth:`Package.load` by default); and the address of its
    HTML page (the service's ``/card``, or the package's file)."""
    running = {d.name: d for d in deployments()}
    if name in running and version is None:
        source, address = running[name].package, f"{running[name].url}/card"
    else:
        try:
            source = (saved or (lambda n: Package.load(n, version=version)))(name)
        except ConfigError:
            listed = ", ".join(running) or "none"
            raise ConfigError(f"no running deployment or saved package named {name!r} (running: {listed})") from None
        address = source.card_page
    card = source.card
    if card is None:
        raise ConfigError(f"{name} was packaged before model cards existed; package it again to give it one")
    return card, address
