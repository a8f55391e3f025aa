"""Each deployment name's releases: what it served, in order (``$DEPLOYKIT_HOME/releases/NAME.json``).

Every successful release pushes the package it serves; a rollback serves the release below the
current one and pops the current one, like an undo (:mod:`deploykit._rollback`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from . import _paths


def _path(name: str) -> Path:
    folder = _paths.home() / "releases"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.json"


def releases(name: str) -> list[dict]:
    """The release stack of ``name``, oldest first: ``{"version", "package", "target", "deployed"}``."""
    path = _path(name)
    return json.loads(path.read_text()) if path.exists() else []


def write(name: str, stack: list[dict]) -> None:
    path = _path(name)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(stack, indent=1))
    os.replace(scratch, path)


def entry(version: str, package: Path | str, target: str) -> dict:
    deployed = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return {"version": str(version), "package": str(package), "target": target, "deployed": deployed}


def record(name: str, version: str, package: Path | str, target: str) -> None:
    """Push a release onto ``name``'s stack (a redeploy of the same package is not a new release)."""
    stack = releases(name)
    if stack and stack[-1]["package"] == str(package):
        return
    write(name, [*stack, entry(version, package, target)])
