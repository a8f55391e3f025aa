"""Pushing a model image to the registry the user names, with the Docker SDK.

``push_image("deploykit/churn:3", "registry.example.com/ml/churn:3")`` tags the local image with the
target reference and pushes it; the engine's own credentials apply (``docker login``), or pass
``auth_config={"username": ..., "password": ...}``. Nothing here has pushed to a real registry: this
machine has none. The tests check the error path and that the engine was asked for the right
repository and tag (see docs/kubernetes.md).
"""

from __future__ import annotations

from typing import Callable

from ..exceptions import ConfigError, DeploymentError


def split_reference(reference: str) -> tuple[str, str]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``); a digest or a missing tag is refused."""
    if "@" in reference:
        raise ConfigError(f"{reference!r} names a digest; push needs a tag: REGISTRY/NAME:TAG")
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        raise ConfigError(f"{reference!r} has no tag; write it as REGISTRY/NAME:TAG, e.g. registry.example.com/churn:3")
    if "/" not in repository:
        raise ConfigError(f"{reference!r} names no registry; write it as REGISTRY/NAME:TAG so the cluster can pull it")
    return repository, tag


def push_image(local: str, reference: str, *, auth_config: dict | None = None,
               on_line: Callable[[str], None] | None = None) -> str:
    """Tag the local image ``local`` as ``reference`` and push it; returns the pushed digest.

    Raises :class:`DeploymentError` with the engine's message when the push fails (registry
    unreachable, login needed, ...).
    """
    from .._docker.engine import client as docker_client

    say = on_line or (lambda line: None)
    repository, tag = split_reference(reference)
    engine = docker_client()
    engine.images.get(local).tag(repository, tag)
    digest, lines = "", []
    for event in engine.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config):
        if "error" in event:
            detail = event.get("errorDetail", {}).get("message", event["error"])
            raise DeploymentError(f"pushing {reference} failed: {detail}; check the registry address and "
                                  "`docker login` for it", target="kubernetes", logs="\n".join(lines))
        line = event.get("status", "")
        if line:
            lines.append(line if "id" not in event else f"{event['id']}: {line}")
            say(lines[-1])
        digest = (event.get("aux") or {}).get("Digest", digest)
    return digest
