"""Each deployment name's releases, and ``deploykit.rollback`` along them.

Every successful :func:`deploykit.deploy` pushes the package it serves onto the name's release stack
(``$DEPLOYKIT_HOME/releases/NAME.json``); a rollback serves the release below the current one and pops
the current one, like an undo. The redeploy is an ordinary health-gated deploy, so a rollback target
that fails its checks leaves the current version serving.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from . import _paths
from .exceptions import ConfigError


def _releases_path(name: str) -> Path:
    folder = _paths.home() / "releases"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.json"


def releases(name: str) -> list[dict]:
    """The release stack of ``name``, oldest first: ``{"version", "package", "target", "deployed"}``."""
    path = _releases_path(name)
    return json.loads(path.read_text()) if path.exists() else []


def _write(name: str, stack: list[dict]) -> None:
    path = _releases_path(name)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(stack, indent=1))
    os.replace(scratch, path)


def _entry(version: str, package: Path, target: str) -> dict:
    deployed = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return {"version": str(version), "package": str(package), "target": target, "deployed": deployed}


def record_release(deployment) -> None:
    """Push what ``deployment`` serves onto its name's stack (a redeploy of the same package is not new)."""
    stack = releases(deployment.name)
    if stack and stack[-1]["package"] == str(deployment.package.path):
        return
    _write(deployment.name, [*stack, _entry(deployment.version, deployment.package.path, deployment.target)])


def rollback(name: str, *, to: str | int | None = None, verbose: bool = True):
    """Serve the release before the current one of deployment ``name`` again (or version ``to``).

    The earlier version is redeployed on the same target with :func:`deploykit.deploy`'s health-gated
    replacement: if it fails to start, to become ready, or to answer a smoke prediction, the current
    version keeps serving and the error says why.

    Parameters
    ----------
    name : str
        A running deployment.
    to : str or int, optional
        A version of the package the deployment serves; default: the release deployed before the current one
        (when no release history is known, the newest older version of the package on this machine).
    verbose : bool
        Print each stage as it ends.

    Returns
    -------
    Deployment

    Raises
    ------
    ConfigError
        Nothing is running under ``name``, there is no earlier release, or version ``to`` does not exist.

    Examples
    --------
    >>> deploykit.rollback("churn")            # doctest: +SKIP
    >>> deploykit.rollback("churn", to=3)      # doctest: +SKIP
    """
    from ._deploy import deploy, find
    from ._package import Package

    current = find(name)
    stack = _aligned(releases(name), current)
    chosen, keep = _choose(stack, current, to) if to is not None else _previous(stack, current)
    package = Path(chosen["package"])
    if not (package / "model").is_dir():
        raise ConfigError(f"v{chosen['version']} of {name!r} was served from {package}, which no longer exists; "
                          "pass to=VERSION to choose a version that does")
    if verbose:
        print(f"rolling back {name} from v{current.version} to v{chosen['version']} ({current.target})")
    deployment = deploy(Package.load(package), target=current.target, name=name, verbose=verbose)
    _write(name, keep)
    from ._security.audit import record_action  # issue 12

    record_action(name, "rollback", {"from": str(current.version), "to": str(deployment.version)})
    return deployment


def _aligned(stack: list[dict], current) -> list[dict]:
    """The stack up to the current release (a history that does not know it starts from it alone)."""
    path = str(current.package.path)
    for i in range(len(stack) - 1, -1, -1):
        if stack[i]["package"] == path:
            return stack[: i + 1]
    return [_entry(current.version, current.package.path, current.target)]


def _previous(stack: list[dict], current) -> tuple[dict, list[dict]]:
    if len(stack) >= 2:
        return stack[-2], stack[:-1]
    older = [v for v in _versions_on_disk(current.package.name) if v < int(current.version)]
    if not older:
        raise ConfigError(
            f"nothing to roll back to: {current.name} serves v{current.version} of {current.package.name!r}, the "
            f"first release deployed under this name, and no older version of the package exists; "
            f"pass to=VERSION (versions: {_listed(current.package.name)})")
    entry = _entry(str(older[-1]), _paths.packages_dir(current.package.name) / str(older[-1]), current.target)
    return entry, [entry]


def _choose(stack: list[dict], current, to: str | int) -> tuple[dict, list[dict]]:
    version, package_name = str(to), current.package.name
    if version == str(current.version):
        raise ConfigError(f"{current.name} already serves v{version} of {package_name!r}; nothing to roll back")
    if not version.isdigit() or int(version) not in _versions_on_disk(package_name):
        raise ConfigError(f"no version {version!r} of package {package_name!r} to roll back to; versions: {_listed(package_name)}")
    entry = _entry(version, _paths.packages_dir(package_name) / version, current.target)
    for i in range(len(stack) - 1, -1, -1):
        if stack[i]["package"] == entry["package"]:
            return stack[i], stack[: i + 1]
    return entry, [*stack, entry]


def _versions_on_disk(package_name: str) -> list[int]:
    folder = _paths.packages_dir(package_name)
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "model").is_dir())


def _listed(package_name: str) -> str:
    return ", ".join(map(str, _versions_on_disk(package_name))) or "none"
