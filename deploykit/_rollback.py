"""``deploykit.rollback``: serve an earlier release of a deployment again.

The release history is :mod:`deploykit._history`; a rollback serves the release below the current one
and pops the current one, like an undo. The redeploy is an ordinary release (:mod:`deploykit._release`),
so a rollback target that fails its checks leaves the current version serving, and clients keep
their URL.
"""

from __future__ import annotations

from pathlib import Path

from . import _experiments, _history, _store
from ._deploy import deploy
from ._deployment import find
from ._package import Package
from ._security.audit import record_action
from .exceptions import ConfigError


def rollback(name: str, *, to: str | int | None = None, verbose: bool = True):
    """Serve the release before the current one of deployment ``name`` again (or version ``to``); or,
    while a candidate runs beside the live version (a shadow, canary or A/B test), end that experiment:
    the candidate is stopped and removed, and the live version keeps serving.

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
    current = find(name)
    if _experiments.has_candidate(current):
        if to is not None:
            raise ConfigError(f"{name} runs an experiment: `deploykit rollback {name}` ends it first, then roll back "
                              "to a version")
        if verbose:
            print(f"ending the experiment of {name}: the candidate v{current.candidate} is removed, v{current.version} "
                  "keeps serving")
        return _experiments.end(current, "rolled back with deploykit.rollback")
    stack = _aligned(_history.releases(name), current)
    chosen, keep = _choose(stack, current, to) if to is not None else _previous(stack, current)
    if not (Path(chosen["package"]) / "model").is_dir():
        raise ConfigError(f"v{chosen['version']} of {name!r} was served from {chosen['package']}, which no longer exists; "
                          "pass to=VERSION to choose a version that does")
    if verbose:
        print(f"rolling back {name} from v{current.version} to v{chosen['version']} ({current.target})")
    deployment = deploy(Package.load(chosen["package"]), target=current.target, name=name, verbose=verbose)
    _history.write(name, keep)
    record_action(name, "rollback", {"from": str(current.version), "to": str(deployment.version)})
    return deployment


def _aligned(stack: list[dict], current) -> list[dict]:
    """The stack up to the current release (a history that does not know it starts from it alone)."""
    path = str(current.package.path)
    for i in range(len(stack) - 1, -1, -1):
        if stack[i]["package"] == path:
            return stack[: i + 1]
    return [_history.entry(current.version, current.package.path, current.target)]


def _previous(stack: list[dict], current) -> tuple[dict, list[dict]]:
    if len(stack) >= 2:
        return stack[-2], stack[:-1]
    older = _store.previous(current.package.name, current.version)
    if older is None:
        raise ConfigError(
            f"nothing to roll back to: {current.name} serves v{current.version} of {current.package.name!r}, the "
            f"first release deployed under this name, and no older version of the package exists; "
            f"pass to=VERSION (versions: {_listed(current.package.name)})")
    entry = _history.entry(str(older), _store.path(current.package.name, older), current.target)
    return entry, [entry]


def _choose(stack: list[dict], current, to: str | int) -> tuple[dict, list[dict]]:
    version, package_name = str(to), current.package.name
    if version == str(current.version):
        raise ConfigError(f"{current.name} already serves v{version} of {package_name!r}; nothing to roll back")
    if not version.isdigit() or not _store.exists(package_name, version):
        raise ConfigError(f"no version {version!r} of package {package_name!r} to roll back to; versions: {_listed(package_name)}")
    entry = _history.entry(version, _store.path(package_name, version), current.target)
    for i in range(len(stack) - 1, -1, -1):
        if stack[i]["package"] == entry["package"]:
            return stack[i], stack[: i + 1]
    return entry, [*stack, entry]


def _listed(package_name: str) -> str:
    return ", ".join(map(str, _store.versions(package_name))) or "none"
