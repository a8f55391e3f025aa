"""deploykit: a fitted model in a notebook becomes a live, explained, documented service.

>>> import deploykit
>>> dep = deploykit.deploy(model, name="churn", X_train=X_train, y_train=y_train)  # doctest: +SKIP
>>> dep.predict(X_test[:3])                                                         # doctest: +SKIP

Heavy libraries (bentoml, shap, scikit-learn) are imported only when a function needs them, so
``import deploykit`` and ``%load_ext deploykit`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .exceptions import (
    CardValidationError,
    ConfigError,
    DeployKitError,
    DeploymentError,
    DockerUnavailableError,
    HealthCheckError,
    ImageBuildError,
    IntegrityError,
    PackagingError,
    ParityError,
    RequestError,
    SchemaError,
    UnsupportedModelError,
)

if TYPE_CHECKING:
    from ._batch import batch
    from ._card import ModelCard
    from ._deploy import deploy
    from ._deployment import Deployment, deployments
    from ._experiments import promote
    from ._security import keys
    from ._docker.build import Image
    from ._kubernetes.manifests import manifests
    from ._package import Package, package
    from ._panel import DeployPanel
    from ._rollback import rollback

__all__ = [
    "CardValidationError",
    "ConfigError",
    "DeployKitError",
    "DeployPanel",
    "Deployment",
    "DeploymentError",
    "DockerUnavailableError",
    "HealthCheckError",
    "Image",
    "ImageBuildError",
    "IntegrityError",
    "ModelCard",
    "Package",
    "PackagingError",
    "ParityError",
    "RequestError",
    "SchemaError",
    "UnsupportedModelError",
    "__version__",
    "batch",
    "deploy",
    "deployments",
    "keys",
    "load_ipython_extension",
    "manifests",
    "package",
    "promote",
    "rollback",
]

_LAZY = {
    "ModelCard": "._card",
    "Package": "._package",
    "package": "._package",
    "Deployment": "._deployment",
    "deploy": "._deploy",
    "deployments": "._deployment",
    "DeployPanel": "._panel",
    "rollback": "._rollback",
    "promote": "._experiments",
    "Image": "._docker.build",
    "batch": "._batch",
    "manifests": "._kubernetes.manifests",
}


_MODULES = {"keys": "._security.keys"}  # deploykit.keys.create(...): a namespace of a few verbs


def __getattr__(name: str):
    if name in _LAZY or name in _MODULES:
        import importlib

        if name in _MODULES:
            value = importlib.import_module(_MODULES[name], __name__)
        else:
            value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython) -> None:
    """``%load_ext deploykit``: registers the ``%deploy`` magic."""
    from ._magic import register

    register(ipython)
