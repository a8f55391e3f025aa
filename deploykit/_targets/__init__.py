"""The registry of targets: where deployments can run.

Each entry maps a target's name to the module and class implementing :class:`.base.Target`. Front
ends (the CLI, ``%deploy``, the panel, ``deploykit run``) take their choices from :func:`names`, and
the release steps look targets up with :func:`get`; none of them names a target. Adding one is a module
and a line here. Modules are imported on first use, so an unused target's libraries never load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from .base import Target

REGISTRY: dict[str, str] = {
    "local": "deploykit._targets.local:LocalTarget",
    "docker": "deploykit._targets.docker:DockerTarget",
    "swarm": "deploykit._targets.swarm:SwarmTarget",
    "kubernetes": "deploykit._targets.kubernetes:KubernetesTarget",
}
_LOADED: dict[str, Target] = {}


def names() -> list[str]:
    """Every target's name, in the registry's order (the first is the default)."""
    return list(REGISTRY)


def get(name: str) -> Target:
    """The target called ``name``."""
    if name not in REGISTRY:
        raise ConfigError(f"target {name!r} is not available; choose one of {', '.join(REGISTRY)}")
    if name not in _LOADED:
        module, _, cls = REGISTRY[name].partition(":")
        _LOADED[name] = getattr(importlib.import_module(module), cls)()
    return _LOADED[name]


def owner_of(option: str) -> str | None:
    """The target whose deploy() options include ``option``, if any."""
    for name in REGISTRY:
        if option in get(name).options:
            return name
    return None


def can(target: Target, capability: str) -> bool:
    """Whether ``target`` has ``capability`` (see :attr:`.base.Target.capabilities`)."""
    return capability in getattr(target, "capabilities", frozenset())


def able(capability: str) -> list[str]:
    """The targets that have ``capability``, for messages that say where to go instead."""
    return [name for name in REGISTRY if can(get(name), capability)]
