"""``deploykit.deploy``: package a model if needed, then release it on a target behind a stable front."""

from __future__ import annotations

import time
from typing import Any, Callable

from . import _experiments, _history, _paths, _release, _targets
from ._deployment import Deployment, adopt
from ._package import Package, package
from ._progress import Progress
from ._runtime.signature import TRUSTED_ENV
from ._security.audit import record_action
from ._security.keys import client_token
from ._security.signing import trusted_env
from .exceptions import ConfigError


def deploy(
    model_or_package: Any,
    *,
    target: str = "local",
    name: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    workers: int | None = None,
    strategy: str = "replace",
    sample: float | None = None,
    traffic: float | None = None,
    steps: tuple | list | None = None,
    interval: float | None = None,
    guardrails: dict | None = None,
    sticky: str | None = None,
    capture: float = 1.0,
    capture_retention: Any = None,
    auth: bool | None = None,
    base_image: str | None = None,
    resources: dict | None = None,
    verbose: bool = True,
    progress: Callable[[dict], None] | None = None,
    **options: Any,
) -> Deployment:
    """Package a model (unless given a :class:`Package`) and serve it at the deployment's stable URL.

    Each deployment name has a front that owns its address for the deployment's whole life. A new
    version starts beside the one serving, gets traffic only once ``/readyz`` answers and a smoke
    prediction on sample rows succeeds, and the old version is retired once the requests it was
    answering are done: clients keep their URL and see no failed request. If the new version fails,
    the old one keeps serving and the error carries the new version's last log lines.

    Parameters
    ----------
    model_or_package : fitted estimator or Package
    target : {"local", "docker", "swarm"}
        ``"local"``: processes on this machine (``bentoml serve`` behind a front process); they outlive
        the Python process that deployed them. ``"docker"``: the image is built if needed, each version
        runs in its own container behind a front container. ``"swarm"``: each version is a Docker Swarm
        service of ``replicas`` replicas behind a front service (``docker swarm init`` first; see
        docs/scale-out.md); :meth:`Deployment.scale` changes the count.
    name : str, optional
        Deployment name; defaults to the package's name. Required with a model.
    port : int, optional
        Port of the deployment's URL; a free one by default. Fixed for the deployment's life.
    host : str
        Address the front listens on (``"0.0.0.0"`` for every interface).
    workers : int, optional
        Server worker processes per version (each loads the model); defaults to the package's setting, 1.
    strategy : {"replace", "shadow", "canary", "ab"}
        ``"replace"`` (the default): the new version takes all traffic. The others start it as the
        **candidate** beside the live version, which keeps answering; end the experiment with
        :func:`deploykit.promote` or :func:`deploykit.rollback`, and see :meth:`Deployment.compare`.

        * ``"shadow"``, ``sample=1.0``: the candidate gets a copy of that fraction of the requests, sent
          asynchronously through a bounded queue; clients only get the live version's answers.
        * ``"canary"``, ``traffic=0.1``: the candidate answers that fraction of the requests. With
          ``steps=(0.1, 0.25, 0.5, 1.0)`` the fraction advances every ``interval`` seconds (default 60)
          while ``guardrails`` hold (``{"error_rate": 0.01, "p99_ms": None, "min_requests": 50}``), and the
          candidate is promoted after the last step; if a guardrail breaks, its traffic goes to 0% at
          once, it is stopped and the reason recorded. A candidate's 5xx or connection error is answered
          by the live version (and still counts against the guardrails).
        * ``"ab"``, ``traffic=0.5``, ``sticky="customer_id"``: an A/B test. A unit (that field of the
          instance, or the ``x-deploykit-unit`` header) always gets the same variant:
          ``sha256(f"{experiment}:{unit}") mod 10,000 < traffic × 10,000``. A sticky field the model does
          not take is removed before the request reaches it. Without a unit, at random.
    capture : float
        The fraction of answered requests recorded (request id, time, version, variant, inputs, outputs)
        in the deployment's capture database, off the request path: what :meth:`Deployment.monitor`
        reads and outcomes join. 0 turns capture off.
    capture_retention : str, int or dict, optional
        How much capture to keep: a duration (``"30d"``), a row count, or ``{"max_age": "7d", "max_rows":
        1_000_000}``; by default 30 days and at most 5 million rows.
    auth : bool, optional
        Require an API key (``Authorization: Bearer dk_...``; ``deploykit keys create NAME``) on every
        endpoint but ``/livez`` and ``/readyz``. By default on whenever the deployment listens beyond
        this machine (a ``host`` other than 127.0.0.1 or localhost, or a target whose front publishes on every
        interface, like swarm); otherwise a redeploy keeps what the
        deployment had. This notebook's :class:`Deployment` (and the CLI, the panel) gets a key of its own,
        kept in the deployment's folder, so its calls keep working.
    base_image, resources
        Docker and swarm only: the base image (see :meth:`Package.build_image`) and limits such as
        ``{"memory": "2g", "cpus": 1.5}`` (per replica on swarm).
    verbose : bool
        Print each stage as it ends.
    progress : callable, optional
        Receives stage and log events (capture … parity … bento, image, front, start, healthy, live,
        retire); raising KeyboardInterrupt from it cancels, leaving any previous version serving.
    **options
        Options of the chosen target (see each target's documentation; swarm: ``replicas=N``, per version,
        by default as many as the live version runs, else 2), then those of
        :func:`deploykit.package` (``X_train``, ``y_train``, ``X_test``, ``y_test``, ``explain``,
        ``sensitive_features``, ``card``, ``profile``). ``profile`` applies to a Package too. Either way the
        deploy is refused (:class:`~deploykit.CardValidationError`) while the card has errors under the
        profile, or is stale: made for another model artifact, or evaluated on the training data.

    Examples
    --------
    >>> dep = deploykit.deploy(clf, name="churn", X_train=X_train, y_train=y_train)  # doctest: +SKIP
    >>> dep.explain(X_test[:1]).top(3)                                                # doctest: +SKIP
    """
    chosen = _targets.get(target)
    target_options, package_kwargs = _split_options(chosen, {"base_image": base_image, "resources": resources, **options})
    settings = {"sample": sample, "traffic": traffic, "steps": steps, "interval": interval, "guardrails": guardrails,
                "sticky": sticky}
    _experiments.plan(strategy, name or "deployment", "0", settings)  # fail fast on a bad setting, before packaging
    capture_settings = _capture(capture, capture_retention)
    chosen.check()  # and when the target cannot be used
    # a profile also holds an existing Package's card to account, not only a card made now
    profile = package_kwargs.pop("profile", None) if isinstance(model_or_package, Package) else package_kwargs.get("profile")
    pkg = _resolve_package(model_or_package, name, verbose, progress, package_kwargs)
    signer = _verify_signature(pkg)
    _check_card(pkg, profile)
    name = _paths.check_name(name or pkg.name)
    started = time.perf_counter()
    progress_steps = Progress(f"deploy {name}", enabled=verbose, listener=progress)
    env = {"DEPLOYKIT_WORKERS": str(workers)} if workers else {}
    env[TRUSTED_ENV] = trusted_env()  # the runtime checks the package's signature at start, against these keys
    plan = _experiments.plan(strategy, name, pkg.version, settings)
    if plan["kind"] == "ab" and plan.get("sticky"):
        plan["strip"] = plan["sticky"] not in {c["name"] for c in pkg.schema["columns"]}
    if _targets.can(chosen, "rolls-out"):  # the platform replaces versions itself (base.RolloutTarget)
        _check_rollout(chosen, plan, port)
        front, version = chosen.roll_out(pkg, name=name, options=target_options, steps=progress_steps)
    else:
        public = _targets.can(chosen, "public-port")  # its front answers on every interface, whatever host says
        front_settings = {"capture": capture_settings, **_auth(name, auth, "0.0.0.0" if public else host)}
        front, version = _release.release(pkg, name=name, target=chosen, port=port, host=host, env=env,
                                          options=target_options, steps=progress_steps, strategy=plan,
                                          settings=front_settings)
    if plan["kind"] != "replace":
        deployment = _experiments.live_deployment(name, chosen, front)
        record_action(name, "deploy", {"version": pkg.version, "target": chosen.name, "url": deployment.url,
                                       "package": str(pkg.path), "signed_by": signer, "strategy": plan["kind"]})
        if verbose:
            print(f"  {name}: v{pkg.version} runs as the {plan['kind']} candidate beside v{deployment.version} at "
                  f"{deployment.url}; deploykit.promote({name!r}) or deploykit.rollback({name!r}) ends it")
        return deployment
    deployment = adopt(pkg, name, chosen.name, front, version)
    _history.record(name, pkg.version, pkg.path, chosen.name)
    record_action(name, "deploy", {"version": pkg.version, "target": chosen.name, "url": deployment.url,
                                   "package": str(pkg.path), "signed_by": signer, "strategy": "replace"})
    if verbose:
        print(f"  serving {name} v{pkg.version} at {deployment.url} ({chosen.name}, ready in "
              f"{time.perf_counter() - started:.1f} s)")
    return deployment


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _auth(name: str, auth: bool | None, host: str) -> dict:
    """The front's ``auth`` setting: as given; on for a host beyond this machine; else left as it is."""
    guarded = auth if auth is not None else (True if host not in LOOPBACK else None)
    if guarded:
        client_token(name, make=True)
    return {} if guarded is None else {"auth": bool(guarded)}


def _capture(fraction: Any, retention: Any) -> dict:
    """The capture settings for the front, checked here so a bad one fails before anything is packaged."""
    from ._front.capture import Retention

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(f"capture={fraction!r}: give the fraction of requests to record, from 0 (off) to 1 (all)")
    try:
        Retention.parse(retention)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return {"fraction": float(fraction), "retention": retention}


def _check_rollout(target: Any, plan: dict, port: int | None) -> None:
    if plan["kind"] != "replace":
        raise ConfigError(f"strategy={plan['kind']!r} runs two versions behind deploykit's front, which "
                          f"target={target.name!r} does not have: its platform rolls versions out itself. Deploy "
                          "with the default strategy, or run the experiment on target='local' or 'docker'")
    if port is not None:
        raise ConfigError(f"port= does not apply to target={target.name!r}: its Service is the address")


def _split_options(target: Any, given: dict) -> tuple[dict, dict]:
    """(the target's options, the rest for package()); an option of another target is an error."""
    mine, rest = {}, {}
    for key, value in given.items():
        if key in target.options:
            mine[key] = value
            continue
        owner = _targets.owner_of(key)
        if owner is not None:
            if value is not None:
                raise ConfigError(f"{[key]} apply to target={owner!r}, not to target={target.name!r}")
            continue
        rest[key] = value
    return {**target.options, **{k: v for k, v in mine.items() if v is not None}}, rest


def _verify_signature(pkg: Package) -> str:
    """The package folder and its bento must be exactly what a trusted key signed; the signer's key id."""
    from ._security.signing import verify_package

    return verify_package(pkg)


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
