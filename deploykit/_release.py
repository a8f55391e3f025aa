"""The release steps, the same on every target: start a version, check it, give it traffic, retire the old.

::

    prepare   the target's own work before a start (docker: the image)
    front     the deployment's front, started once for the deployment's life (its URL never changes)
    start     the new version, without traffic
    healthy   /readyz answers, and a smoke prediction on the package's sample rows succeeds
    live      the front's routing table names the new version; new requests go to it
    retire    the previous version, once the front has no request in flight to it

A version that fails to start, to become ready or to answer the smoke prediction is removed and the
previous one keeps serving, untouched; the error carries the new version's last log lines. The front
retries a request whose upstream went away on the current version, so clients see no switch.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ._client import ServiceClient
from ._front.routes import FORMAT as ROUTES_FORMAT
from .exceptions import ConfigError, DeploymentError, HealthCheckError, RequestError

READY_TIMEOUT = 180.0
DRAIN_SECONDS = 30.0
# BentoML logs this and keeps its arbiter alive when a worker cannot load the service.
_STARTUP_FAILED = "Application startup failed"


def release(pkg: Any, *, name: str, target: Any, port: int | None, host: str, env: dict, options: dict,
            steps: Any) -> tuple[Any, Any]:
    """Serve ``pkg`` as the live version of deployment ``name`` on ``target``; return (front, version)."""
    prepared = target.prepare(pkg, options, steps)
    front = target.front(name)
    made_front = front is None
    if made_front:
        with steps.stage("front", f"a front on a stable address ({target.name})"):
            front = target.create_front(name, port=port, host=host, options=options)
    else:
        _check_address(front, port, name)
    previous = live_version(target, front)
    try:
        with steps.stage("start", target.name):
            version = target.start(front, pkg, env=env, prepared=prepared, options=options)
        try:
            with steps.stage("healthy", "/readyz and a smoke prediction"):
                wait_ready(version, name, pkg.version, listener=steps.emit)
                smoke(version, name, pkg)
            with steps.stage("live", "routing traffic to the new version"):
                route(front, version)
        except BaseException:
            _discard(target, front, version)
            raise
    except BaseException:
        if made_front:
            target.remove(name)
        raise
    if previous is not None and previous.instance != version.instance:
        with steps.stage("retire", f"v{previous.version} once its requests are answered"):
            target.retire(front, previous, drain=DRAIN_SECONDS)
    return front, version


def route(front: Any, live: Any) -> None:
    """Give ``live`` all of the deployment's traffic."""
    variant = {"version": str(live.version), "upstreams": [live.upstream], "instance": live.instance}
    front.set_routes({"format": ROUTES_FORMAT, "name": front.name, "live": variant, "candidate": None,
                      "strategy": {"kind": "replace"}})


def live_version(target: Any, front: Any) -> Any:
    """The version the front routes to now, or None."""
    instance = (front.routes().get("live") or {}).get("instance")
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
