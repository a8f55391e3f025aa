"""``deploykit.deploy``: package a model if needed, then release it on a target behind a stable front."""

from __future__ import annotations

import time
from typing import Any, Callable

from . import _history, _paths, _release, _targets
from ._deployment import Deployment, adopt, deployments, find  # noqa: F401 - deployments, find: the public names
from ._package import Package, package
from ._progress import Progress
from .exceptions import ConfigError


def deploy(
    model_or_package: Any,
    *,
    target: str = "local",
    name: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    workers: int | None = None,
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
    target : {"local", "docker"}
        ``"local"``: processes on this machine (``bentoml serve`` behind a front process); they outlive
        the Python process that deployed them. ``"docker"``: the image is built if needed, each version
        runs in its own container behind a front container.
    name : str, optional
        Deployment name; defaults to the package's name. Required with a model.
    port : int, optional
        Port of the deployment's URL; a free one by default. Fixed for the deployment's life.
    host : str
        Address the front listens on (``"0.0.0.0"`` for every interface).
    workers : int, optional
        Server worker processes per version (each loads the model); defaults to the package's setting, 1.
    base_image, resources
        Docker only: the base image (see :meth:`Package.build_image`) and limits such as
        ``{"memory": "2g", "cpus": 1.5}``.
    verbose : bool
        Print each stage as it ends.
    progress : callable, optional
        Receives stage and log events (capture … parity … bento, image, front, start, healthy, live,
        retire); raising KeyboardInterrupt from it cancels, leaving any previous version serving.
    **options
        Options of the chosen target (see each target's documentation), then those of
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
    chosen.check()  # fail fast, before packaging
    # a profile also holds an existing Package's card to account, not only a card made now
    profile = package_kwargs.pop("profile", None) if isinstance(model_or_package, Package) else package_kwargs.get("profile")
    pkg = _resolve_package(model_or_package, name, verbose, progress, package_kwargs)
    _check_card(pkg, profile)
    name = _paths.check_name(name or pkg.name)
    started = time.perf_counter()
    steps = Progress(f"deploy {name}", enabled=verbose, listener=progress)
    env = {"DEPLOYKIT_WORKERS": str(workers)} if workers else {}
    front, version = _release.release(pkg, name=name, target=chosen, port=port, host=host, env=env,
                                      options=target_options, steps=steps)
    deployment = adopt(pkg, name, chosen.name, front, version)
    _history.record(name, pkg.version, pkg.path, chosen.name)
    if verbose:
        print(f"  serving {name} v{pkg.version} at {deployment.url} ({chosen.name}, ready in "
              f"{time.perf_counter() - started:.1f} s)")
    return deployment


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
