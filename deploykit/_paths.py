"""Where deploykit keeps packages, logs and deployment state: ``$DEPLOYKIT_HOME`` or ``~/.deploykit``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .exceptions import ConfigError

_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$")


def home() -> Path:
    path = Path(os.environ.get("DEPLOYKIT_HOME") or Path.home() / ".deploykit")
    path.mkdir(parents=True, exist_ok=True)
    return path


def packages_dir(name: str | None = None) -> Path:
    path = home() / "packages" / (name or "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def deployment_dir(name: str | None = None) -> Path:
    """A deployment's own folder (its front's state: routing table, capture, API keys, the audit log; its
    logs), or the folder of them all."""
    path = home() / "deployments" / (check_name(name) if name else "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def share(path: str | Path) -> None:
    """Give a file the host just wrote into a deployment's folder to that folder's owner.

    A Docker front runs as an unprivileged user that owns the folder; a file root writes there later (a
    new API key file, say) would otherwise be root's and unreadable to it. A no-op unless running as root.
    """
    if os.getuid() != 0:
        return
    folder = os.stat(Path(path).parent)
    if folder.st_uid != 0:
        os.chown(path, folder.st_uid, folder.st_gid)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        suggestion = re.sub(r"[^a-z0-9_-]+", "-", str(name).lower()).strip("-_") or "model"
        raise ConfigError(
            f"name {name!r} is not usable: use lowercase letters, digits, '-' or '_' "
            f"(at most 64, starting and ending with a letter or digit), e.g. {suggestion!r}"
        )
    return name


