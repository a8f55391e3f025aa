"""Release strategies from the control plane: a candidate beside the live version, and how it ends.

``deploy(..., strategy="shadow" | "canary" | "ab")`` starts the candidate like any release (started,
checked, never given traffic before it is healthy), then hands the front a routing table with a
``candidate`` and the strategy's settings (:mod:`deploykit._front.strategy` is their meaning). The
front mirrors, splits and watches the guardrails; this module turns the user's arguments into those
settings, and ends an experiment: :func:`promote` (the candidate becomes live, health-gated like a
replace) or :func:`end` (through ``deploykit.rollback``: the candidate is removed).
"""

from __future__ import annotations

from typing import Any

from . import _history, _targets
from ._deployment import Deployment, adopt, find, package_of
from ._front.strategy import StrategyError, normalise
from ._release import live_version, smoke, wait_ready
from ._security.audit import record_action
from ._targets.base import Running
from .exceptions import ConfigError

STRATEGIES = ("replace", "shadow", "canary", "ab")
# which deploy() arguments each strategy takes
SETTINGS = {"shadow": ("sample",), "canary": ("traffic", "steps", "interval", "guardrails"), "ab": ("traffic", "sticky")}


def plan(strategy: str, name: str, version: str, settings: dict) -> dict:
    """The routing table's strategy from deploy()'s arguments; an argument the strategy does not take,
    or a value it cannot use, is a ConfigError naming it."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    given = {k: v for k, v in settings.items() if v is not None}
    allowed = SETTINGS.get(strategy, ())
    stray = sorted(set(given) - set(allowed))
    if stray:
        owners = [s for s, keys in SETTINGS.items() if stray[0] in keys]
        raise ConfigError(f"{stray} do not apply to strategy={strategy!r}" +
                          (f"; {stray[0]} belongs to strategy={owners[0]!r}" if owners else ""))
    data = {"kind": strategy, **given}
    if "steps" in data:
        data["steps"] = list(data["steps"])
    if strategy == "ab":
        data["experiment"] = f"{name}:v{version}"  # seeds the assignment: the same for every router of it
    try:
        return normalise(data)
    except StrategyError as exc:
        raise ConfigError(f"strategy={strategy!r}: {exc}") from None


def _candidate(deployment: Deployment) -> Any:
    routes = deployment.front.routes()
    found = routes.get("candidate")
    if not found:
        raise ConfigError(f"{deployment.name} has no candidate: deploy one with strategy='shadow', 'canary' or 'ab' first")
    target = _targets.get(deployment.target)
    version = target.version(deployment.front, found["instance"])
    if version is None:
        raise ConfigError(f"the candidate v{found['version']} of {deployment.name} no longer runs; "
                          f"`deploykit rollback {deployment.name}` ends the experiment")
    return version, routes


def promote(name: str, *, verbose: bool = True) -> Deployment:
    """Make deployment ``name``'s candidate live.

    The candidate must still pass ``/readyz`` and a smoke prediction, like any new version; then the
    front routes everything to it, and retires the previous live version once its requests are
    answered. The promotion is recorded in the experiment's history.

    Examples
    --------
    >>> deploykit.deploy(new_model_pkg, name="churn", strategy="shadow")   # doctest: +SKIP
    >>> deploykit.promote("churn")                                         # doctest: +SKIP
    """
    from ._package import Package

    deployment = find(name)
    version, _ = _candidate(deployment)
    pkg = Package.load(version.package)
    wait_ready(version, name, pkg.version)
    smoke(version, name, pkg)
    if verbose:
        print(f"promoting {name} v{pkg.version} (was the candidate beside v{deployment.version})")
    deployment.front.call("POST", "promote", {"reason": "promoted with deploykit.promote"}, timeout=90)
    target = _targets.get(deployment.target)
    target.tidy(deployment.front)
    _history.record(name, pkg.version, pkg.path, deployment.target)
    record_action(name, "promote", {"version": pkg.version, "previous": str(deployment.version)})
    return adopt(pkg, name, deployment.target, deployment.front, version)


def end(deployment: Deployment, reason: str) -> Deployment:
    """End ``deployment``'s experiment: the candidate is stopped and removed, the live version stays."""
    candidate = deployment.candidate
    deployment.front.call("POST", "end", {"reason": reason}, timeout=90)
    _targets.get(deployment.target).tidy(deployment.front)
    record_action(deployment.name, "rollback", {"from": str(candidate), "to": str(deployment.version),
                                                "experiment": "ended"})
    return deployment


def has_candidate(deployment: Deployment) -> bool:
    return bool(deployment.front.routes().get("candidate"))


def live_deployment(name: str, target: Any, front: Any) -> Deployment:
    """The Deployment of what answers ``name`` now (its live version), after a candidate was added."""
    live = live_version(target, front)
    found = Running(name=name, target=target.name, front=front, live=live, package=live.package)
    return adopt(package_of(found), name, target.name, front, live, started=live.started)
