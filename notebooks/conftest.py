"""The tutorials are tests: ``python -m pytest`` (notebooks/ is in testpaths) runs each one under nbval.

Outputs are compared only in cells marked ``# NBVAL_CHECK_OUTPUT`` (``--nbval-lax``) unless the command
line asks for strict ``--nbval``; every notebook runs in a kernel of this environment
(``--nbval-current-env``). Nothing here applies to the other tests: nbval only collects ``.ipynb`` files.

Each notebook's kernel gets its own deploykit and BentoML homes, never the user's. Whatever a tutorial
leaves behind (a service after a failed cell, the images the Docker tutorial builds) is removed at the
end, matched by those homes. The Docker tutorial needs a Docker engine and a usable base image
(``$DEPLOYKIT_BASE_IMAGE``): without them it is skipped locally and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() == "true"
NEEDS_DOCKER = {"03-docker.ipynb"}
HOMES = ("DEPLOYKIT_HOME", "BENTOML_HOME", "BENTOML_DO_NOT_TRACK")
_state: dict = {"root": None, "saved": None, "docker": None}


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("nbval"):
        if IN_CI:
            raise pytest.UsageError("CI=true but nbval is not installed, so the tutorials cannot run: pip install -e '.[test]'")
        return
    if not (config.option.nbval or config.option.nbval_lax):
        config.option.nbval_lax = True
    if not config.option.nbval_kernel_name:
        config.option.nbval_current_env = True


def _ours(item) -> bool:
    return Path(str(item.path)).parent == HERE and item.path.suffix == ".ipynb"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _ours(item):
            item.add_marker(pytest.mark.serve)
            if item.path.name in NEEDS_DOCKER:
                item.add_marker(pytest.mark.docker)


def _docker_problem() -> str | None:
    """Why the Docker tutorial cannot run here, or None."""
    if _state["docker"] is None:
        from deploykit._docker.base import check_base_image, resolve_base_image
        from deploykit._docker.engine import available
        from deploykit.exceptions import DeployKitError

        problem = None
        if not available():
            problem = "no Docker engine answers (start dockerd; `.ci/run` does)"
        else:
            try:
                check_base_image(resolve_base_image())
            except DeployKitError as exc:
                problem = f"no usable base image ({str(exc).splitlines()[0]}); set DEPLOYKIT_BASE_IMAGE (`.ci/run` does)"
        _state["docker"] = problem or ""
    return _state["docker"] or None


def _homes() -> dict:
    if _state["root"] is None:
        _state["root"] = Path(tempfile.mkdtemp(prefix="deploykit-notebooks-"))
    root = _state["root"]
    return {"DEPLOYKIT_HOME": str(root / "deploykit"), "BENTOML_HOME": str(root / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}


def pytest_runtest_setup(item):
    """Before nbval starts a notebook's kernel (at its first cell): the kernel inherits these homes."""
    if not _ours(item):
        return
    if item.path.name in NEEDS_DOCKER and (problem := _docker_problem()):
        message = f"{item.path.name} needs Docker: {problem}"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    _state["saved"] = {key: os.environ.get(key) for key in HOMES}
    os.environ.update(_homes())


def pytest_runtest_teardown(item):
    if _ours(item) and _state["saved"] is not None:
        _restore(_state["saved"])
        _state["saved"] = None


def _restore(saved: dict) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_sessionfinish(session):
    root = _state["root"]
    if root is None:
        return
    saved = {key: os.environ.get(key) for key in HOMES}
    os.environ.update(_homes())
    try:
        _remove_leftovers(str(root))
    finally:
        _restore(saved)
        shutil.rmtree(root, ignore_errors=True)


def _remove_leftovers(root: str) -> None:
    """Stop services and remove model images that came from the tutorials' homes (and nothing else)."""
    import deploykit

    for dep in deploykit.deployments():
        if str(dep.package.path).startswith(root):
            dep.stop()
    from deploykit._docker.engine import LABEL, available, client

    if available():
        engine = client()
        for image in engine.images.list(filters={"label": f"{LABEL}.role=model"}):
            if image.labels.get(f"{LABEL}.package", "").startswith(root):
                engine.images.remove(image.id, force=True)
