"""The public surface is deliberate: exactly these names, and importing deploykit stays light."""

import subprocess
import sys

import deploykit

PUBLIC = [
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


def test_all_is_exactly_the_public_api():
    assert deploykit.__all__ == PUBLIC
    assert sorted(deploykit.__all__) == deploykit.__all__
    for name in PUBLIC:
        assert getattr(deploykit, name) is not None


def test_import_does_not_load_heavy_libraries():
    code = "import sys, deploykit; print(' '.join(m for m in ('bentoml','shap','sklearn','pandas','docker','fairlearn','matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_errors_inherit_the_builtin_they_resemble():
    assert issubclass(deploykit.SchemaError, ValueError)
    assert issubclass(deploykit.UnsupportedModelError, TypeError)
    assert issubclass(deploykit.ParityError, deploykit.PackagingError)
    assert issubclass(deploykit.HealthCheckError, deploykit.DeploymentError)
    for name in PUBLIC:
        obj = getattr(deploykit, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, deploykit.DeployKitError)


def test_runtime_does_not_import_the_notebook_side():
    """The service's code imports nothing of deploykit outside _runtime (it is copied into bentos)."""
    import pathlib
    import re

    runtime = pathlib.Path(deploykit.__file__).parent / "_runtime"
    for path in runtime.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+deploykit", text, re.M), path.name
        assert "ipywidgets" not in text and "import docker" not in text, path.name
