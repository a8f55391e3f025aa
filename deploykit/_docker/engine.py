"""The Docker engine connection, with an actionable error when it cannot be reached."""

from __future__ import annotations

import functools

from ..exceptions import DockerUnavailableError

LABEL = "ai.deploykit"  # every container, image and network deploykit creates carries labels under this prefix


@functools.lru_cache(maxsize=1)
def _client():
    import docker

    return docker.from_env(timeout=300)


def client():
    """A Docker SDK client that has answered a ping, or :class:`DockerUnavailableError`."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailableError(
            "the Docker SDK for Python is not installed: pip install docker (it comes with deploykit's "
            "dependencies; reinstall deploykit)"
        ) from None

    try:
        engine = _client()
        engine.ping()
        return engine
    except docker.errors.DockerException as exc:
        _client.cache_clear()
        raise DockerUnavailableError(
            f"cannot reach the Docker engine ({str(exc).splitlines()[0][:160]}). Start it (`dockerd &` as "
            "root, or Docker Desktop), or set DOCKER_HOST; or deploy with target='local'."
        ) from None


def available() -> bool:
    try:
        client()
        return True
    except DockerUnavailableError:
        return False
