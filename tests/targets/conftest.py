"""Docker fixtures: a real engine (required under CI=true), a Python base image, and housekeeping that
removes what these tests created while keeping the shared dependency images (they are the cache)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import require

TEST_LABEL = "ai.deploykit.managed"


@pytest.fixture(scope="session")
def docker_engine():
    from deploykit._docker.engine import available, client

    require(available(), "a Docker engine", "start dockerd (`.ci/run` installs docker.io and starts it)")
    engine = client()
    before = {
        "images": {image.id for image in engine.images.list()},
        "containers": {c.id for c in engine.containers.list(all=True)},
        "networks": {n.id for n in engine.networks.list()},
    }
    yield engine
    # remove what deploykit made during this run only: a user's own deployments on the same engine
    # carry the same labels and must survive the tests
    for container in engine.containers.list(all=True, filters={"label": f"{TEST_LABEL}=true"}):
        if container.id not in before["containers"]:
            container.remove(force=True)
    for network in engine.networks.list(filters={"label": f"{TEST_LABEL}=true"}):
        if network.id not in before["networks"]:
            network.remove()
    for image in engine.images.list(filters={"label": "ai.deploykit.role=model"}):
        if image.id not in before["images"]:
            engine.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def base_image(docker_engine):
    """The base image the tests build on: $DEPLOYKIT_BASE_IMAGE, else the debootstrap one, else python:X.Y-slim."""
    import docker

    from deploykit._docker.base import default_base_image, python_minor

    candidates = [os.environ.get("DEPLOYKIT_BASE_IMAGE"), f"local/python:{python_minor()}-bookworm", default_base_image()]
    for name in filter(None, candidates):
        try:
            docker_engine.images.get(name)
        except docker.errors.ImageNotFound:
            continue
        os.environ["DEPLOYKIT_BASE_IMAGE"] = name
        return name
    require(False, "a Python base image", "build one with `deploykit base-image` (`.ci/run` does)")
