"""The release steps, the same on every target: start a version, check it, give it traffic, retire the old.

::

    prepare   the target's own work before a start (docker: the image)
    front     the deployment's front, started once for the deployment's life (its URL never changes)
    start     the new version, without traffic
    healthy   /readyz answers, and a smoke prediction on the package's sample rows succeeds
    live      the front's routing table names the new version; new requests go to it
    retire    the previous version, once the front has no request in flight to it

With a strategy other than replace, "live" becomes "candidate": the front's table keeps the live
version and adds the new one as its candidate, with the strategy's settings; nothing is retired until
the experiment is promoted or rolled back (:mod:`deploykit._experiments`).

A version that fails to start, to become ready or to answer the smoke prediction is removed and the
previous one keeps serving, untouched; the error carries the new version's last log lines. The front
retries a request whose upstream went away on the current version, so clients see no switch.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from . import _paths
from ._client import ServiceClient
from ._front import settings as front_settings
from ._front.routes import FORMAT as ROUTES_FORMAT
from .exceptions import ConfigError, DeployKitError, DeploymentError, HealthCheckError, RequestError

READY_TIMEOUT = 180.0
DRAIN_SECONDS = 30.0
INTERNAL_TOKEN = "DEPLOYKIT_INTERNAL_TOKEN"  # lets the front ask a version it no longer routes to to exit
# BentoML logs this and keeps its arbiter alive when a worker cannot load the service.
_STARTUP_FAILED = "Application startup failed"


def release(pkg: Any, *, name: str, target: Any, port: int | None, host: str, env: dict, options: dict,
            steps: Any, strategy: dict | None = None, settings: dict | None = None) -> tuple[Any, Any]:
    """Serve ``pkg`` on deployment ``name`` of ``target``; return (front, the new version).

    With the default strategy (``{"kind": "replace"}``) the new version becomes live and the previous one
    is retired. With another (shadow, canary, A/B) it becomes the candidate beside the live version, and
    the front shares the traffic as the strategy says until the experiment is promoted or rolled back.
    """
    strategy = strategy or {"kind": "replace"}
    prepared = target.prepare(pkg, options, steps)
    front = target.front(name)
    made_front = front is None
    if made_front:
        if strategy["kind"] != "replace":
            raise ConfigError(f"{name} serves nothing yet, so a {strategy['kind']} has no live version to run beside; "
                              "deploy it first (strategy='replace')")
        if settings:  # the front starts with them (its state folder is the deployment's, on every target)
            front_settings.write(_paths.deployment_dir(name), **settings)
        with steps.stage("front", f"a front on a stable address ({target.name})"):
            front = target.create_front(name, port=port, host=host, options=options)
    else:
        _check_address(front, port, name)
        if settings:
            front.call("PUT", "settings", settings)
    routes = front.routes()
    previous = live_version(target, front, routes)
    if strategy["kind"] != "replace":
        _check_experiment(name, routes, previous, strategy)
    try:
        with steps.stage("start", target.name):
            version = target.start(front, pkg, env={**env, INTERNAL_TOKEN: front.token}, prepared=prepared,
                                   options=options)
        try:
            with steps.stage("healthy", "/readyz and a smoke prediction"):
                wait_ready(version, name, pkg.version, listener=steps.emit)
                smoke(version, name, pkg)
            if strategy["kind"] == "replace":
                with steps.stage("live", "routing traffic to the new version"):
                    route(front, version)
            else:
                with steps.stage("candidate", f"{strategy['kind']} beside v{previous.version}"):
                    route(front, previous, candidate=version, strategy=strategy,
                          event={"action": "start", "reason": _describe(strategy, previous, version)})
        except BaseException:
            _discard(target, front, version)
            raise
    except BaseException:
        if made_front:
            target.remove(name)
        raise
    if strategy["kind"] == "replace" and previous is not None and previous.instance != version.instance:
        with steps.stage("retire", f"v{previous.version} once its requests are answered"):
            target.retire(front, previous, drain=DRAIN_SECONDS)
    return front, version


def route(front: Any, live: Any, *, candidate: Any = None, strategy: dict | None = None, event: dict | None = None) -> None:
    """Give ``live`` the deployment's traffic, and ``candidate`` what ``strategy`` says."""
    def variant(version: Any) -> dict:
        record = {"version": str(version.version), "upstreams": [version.upstream], "instance": version.instance}
        limit = _max_body(version)
        if limit is not None:
            record["max_body"] = limit
        return record

    table = {"format": ROUTES_FORMAT, "name": front.name, "live": variant(live),
             "candidate": variant(candidate) if candidate is not None else None,
             "strategy": strategy or {"kind": "replace"}}
    if event:
        table["event"] = event
    front.set_routes(table)


def _max_body(version: Any) -> int | None:
    """The request-body limit of the package ``version`` serves, when its folder is on this machine."""
    from pathlib import Path

    from ._runtime.limits import Limits
    from ._runtime.manifest import Manifest

    try:
        return Limits.from_manifest(Manifest.read(Path(version.package) / "model")).max_body_bytes
    except (DeployKitError, OSError, TypeError, ValueError):
        return None


def _check_experiment(name: str, routes: dict, previous: Any, strategy: dict) -> None:
    if previous is None:
        raise ConfigError(f"{name} has no live version for a {strategy['kind']} to run beside; deploy one first")
    running = routes.get("candidate")
    if running:
        raise ConfigError(f"{name} already runs an experiment ({routes['strategy']['kind']} of v{running['version']} "
                          f"beside v{previous.version}); end it first: deploykit.promote({name!r}) or "
                          f"deploykit.rollback({name!r})")


def _describe(strategy: dict, live: Any, candidate: Any) -> str:
    kind = strategy["kind"]
    if kind == "shadow":
        return f"shadow: v{candidate.version} gets a copy of {strategy['sample']:.0%} of the requests v{live.version} answers"
    if kind == "canary":
        steps = f", steps {strategy['steps']} every {strategy['interval']:g} s" if strategy.get("steps") else ""
        return f"canary: v{candidate.version} answers {strategy['traffic']:.0%} of the requests{steps}; guardrails {strategy['guardrails']}"
    return (f"A/B: v{candidate.version} answers {strategy['traffic']:.0%} of the units"
            + (f" (sticky on {strategy['sticky']!r})" if strategy.get("sticky") else ""))


def live_version(target: Any, front: Any, routes: dict | None = None) -> Any:
    """The version the front routes to now, or None."""
    instance = ((routes or front.routes()).get("live") or {}).get("instance")
    return target.version(front, instance) if instance else None


def _check_address(front: Any, port: int | None, name: str) -> None:
    if port is not None and not front.url.endswith(f":{port}"):
        raise ConfigError(f"{name} already serves at {front.url}, and a deployment keeps its address for its whole "
                          f"life; deploy without port=, or stop {name} first to move it to port {port}")


def _discard(target: Any, front: Any, version: Any) -> None:
    """Remove a version that never got traffic; a failure here must not hide why it was discarded."""
    try:
        target.retire(front, version, drain=0)
    except Exception:  # noqa: BLE001
        pass


def _cause(logs: str) -> str:
    """The last exception line of a log, e.g. ``IntegrityError: artifact model.skops has ...``."""
    for line in reversed(logs.splitlines()):
        head, _, rest = line.strip().partition(":")
        if rest and head.endswith(("Error", "Exception")) and " " not in head:
            return f"{head.rsplit('.', 1)[-1]}:{rest}"
    return "see the log lines below"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(version: Any, name: str, number: str, timeout: float = READY_TIMEOUT,
               listener: Callable[[dict], None] | None = None) -> None:
    """Wait until ``version`` answers /readyz; fail at once if it exits or cannot load the package."""
    probe = ServiceClient(version.direct_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if listener is not None:  # a heartbeat while waiting; a listener raising KeyboardInterrupt cancels
                listener({"heartbeat": "healthy", "seconds": timeout - (deadline - time.monotonic())})
            code = version.exited()
            logs = version.logs(None) if code is not None or _STARTUP_FAILED in version.logs(400) else ""
            if code is not None or logs:
                what = f"exited with code {code}" if code is not None else "failed to start"
                raise DeploymentError(
                    f"the service for {name} v{number} {what}: {_cause(logs)}; the previous version (if any) "
                    f"keeps serving. Last log lines:\n{_tail(logs, 30)}", target=getattr(version, "target", None), logs=logs)
            if probe.ok("/readyz", timeout=1.0):
                return
            time.sleep(0.2)
    finally:
        probe.close()
    raise HealthCheckError(
        f"{name} v{number} did not become ready within {timeout:.0f} s; the previous version (if any) keeps "
        f"serving. Last log lines:\n{version.logs(30)}", target=getattr(version, "target", None), logs=version.logs(200))


def smoke(version: Any, name: str, pkg: Any) -> None:
    """A prediction on the package's sample rows must succeed before the version gets traffic."""
    rows = pkg.sample_rows()
    if not rows:
        return
    probe = ServiceClient(version.direct_url)
    try:
        predictions = probe.post("/predict", rows)["predictions"]
    except (RequestError, DeploymentError) as exc:
        raise HealthCheckError(
            f"{name} v{pkg.version} is up but failed a smoke prediction on {len(rows)} sample rows: {exc}; "
            f"the previous version (if any) keeps serving. Last log lines:\n{version.logs(30)}",
            target=getattr(version, "target", None)) from None
    finally:
        probe.close()
    if len(predictions) != len(rows):
        raise HealthCheckError(f"smoke prediction returned {len(predictions)} answers for {len(rows)} rows")
