"""The numbered versions of each package name: ``$DEPLOYKIT_HOME/packages/NAME/1``, ``2``, ``3`` ...

The one place that knows how versions are laid out on disk. A version exists once its folder holds a
manifest (``model/deploykit.json``); a package being built lives in a hidden work folder until
:func:`publish` renames it into place, so readers never see half a package. Reserving a number makes
that folder with ``mkdir``, which is atomic: two processes packaging the same name get different
numbers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import _paths
from ._runtime.manifest import FILENAME

_WORK_PREFIX = ".building-"


def path(name: str, version: int | str) -> Path:
    """The folder of version ``version`` of ``name`` (whether it exists or not)."""
    return _paths.packages_dir(name) / str(version)


def exists(name: str, version: int | str) -> bool:
    return (path(name, version) / "model" / FILENAME).is_file()


def versions(name: str) -> list[int]:
    """The complete versions of ``name``, oldest first."""
    folder = _paths.packages_dir(name)
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "model" / FILENAME).is_file())


def newest(name: str) -> int | None:
    found = versions(name)
    return found[-1] if found else None


def previous(name: str, version: int | str) -> int | None:
    """The newest version of ``name`` older than ``version``."""
    older = [v for v in versions(name) if v < int(version)]
    return older[-1] if older else None


def names() -> list[str]:
    """Every package name that has at least one complete version."""
    return sorted(p.name for p in _paths.packages_dir().iterdir() if p.is_dir() and versions(p.name))


def every_version() -> set[tuple[str, str]]:
    """(name, version) of every complete package on this machine."""
    return {(name, str(v)) for name in names() for v in versions(name)}


def reserve(name: str) -> tuple[str, Path]:
    """The next version number of ``name`` and the empty work folder its package is built in."""
    folder = _paths.packages_dir(name)
    taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    taken += [int(p.name[len(_WORK_PREFIX):]) for p in folder.iterdir()
              if p.name.startswith(_WORK_PREFIX) and p.name[len(_WORK_PREFIX):].isdigit()]
    candidate = max(taken, default=0) + 1
    while True:
        work = folder / f"{_WORK_PREFIX}{candidate}"
        try:
            work.mkdir()
        except FileExistsError:
            candidate += 1
            continue
        if path(name, candidate).exists():  # published meanwhile by another process
            work.rmdir()
            candidate += 1
            continue
        return str(candidate), work


def publish(work: Path, name: str, version: str) -> Path:
    """Move a finished work folder into place as version ``version``."""
    final = path(name, version)
    os.rename(work, final)
    return final


def discard(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
