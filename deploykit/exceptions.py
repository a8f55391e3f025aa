"""Errors raised by deploykit.

Every error deploykit raises on purpose is a :class:`DeployKitError`; each also inherits the builtin
it resembles, so ``except ValueError`` keeps working for code that does not know deploykit::

    DeployKitError(Exception)
    ├── ConfigError(DeployKitError, ValueError)             an argument or setting is unusable
    ├── UnsupportedModelError(DeployKitError, TypeError)    the object cannot be packaged
    ├── SchemaError(DeployKitError, ValueError)             training/test data do not fit together
    ├── CardValidationError(DeployKitError, ValueError)     the model card is stale or fails its profile
    ├── PackagingError(DeployKitError, RuntimeError)        serialisation or the bento build failed
    │   ├── ParityError(PackagingError)                     the reloaded model predicts differently
    │   └── ImageBuildError(PackagingError)                 the Docker image could not be built
    ├── IntegrityError(DeployKitError, ValueError)          an artifact's sha256 does not match
    ├── DeploymentError(DeployKitError, RuntimeError)       a service would not start or answer
    │   ├── HealthCheckError(DeploymentError)               started, but never became healthy
    │   └── DockerUnavailableError(DeploymentError)         no Docker engine answers
    └── RequestError(DeployKitError, ValueError)            the service answered 4xx (bad input)

Messages say what failed, the value received, and what to do about it.
"""

from __future__ import annotations

# The serving runtime must not import the notebook side, so the classes it raises live there.
from deploykit._runtime.errors import DeployKitError, IntegrityError

__all__ = [
    "CardValidationError",
    "ConfigError",
    "DeployKitError",
    "DeploymentError",
    "DockerUnavailableError",
    "HealthCheckError",
    "ImageBuildError",
    "IntegrityError",
    "PackagingError",
    "ParityError",
    "RequestError",
    "SchemaError",
    "UnsupportedModelError",
]


class ConfigError(DeployKitError, ValueError):
    """An argument or setting is unusable (a name, a target, a port)."""


class UnsupportedModelError(DeployKitError, TypeError):
    """The object given as a model cannot be packaged."""


class SchemaError(DeployKitError, ValueError):
    """Training or test data are unusable, or do not agree with each other."""

    def __init__(self, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class CardValidationError(DeployKitError, ValueError):
    """The model card fails its validation profile, or is stale (made for another model artifact, or
    evaluated on the training data); ``.findings`` lists the errors, ``.profile`` names the profile."""

    def __init__(self, message: str, *, profile: str | None = None, findings: list | None = None) -> None:
        super().__init__(message)
        self.profile = profile
        self.findings = findings or []


class PackagingError(DeployKitError, RuntimeError):
    """Serialising the model or building the bento failed."""


class ParityError(PackagingError):
    """The model reloaded in a clean process does not predict what the notebook's model predicts."""

    def __init__(self, message: str, *, parity: object = None) -> None:
        super().__init__(message)
        self.parity = parity


class DeploymentError(DeployKitError, RuntimeError):
    """A deployment could not be started, replaced, reached or stopped."""

    def __init__(self, message: str, *, target: str | None = None, logs: str = "") -> None:
        super().__init__(message)
        self.target = target
        self.logs = logs


class DockerUnavailableError(DeploymentError):
    """The Docker engine cannot be reached."""

    def __init__(self, message: str) -> None:
        super().__init__(message, target="docker")


class ImageBuildError(PackagingError):
    """A Docker image (base, dependencies or model) could not be built."""

    def __init__(self, message: str, *, image: str | None = None, logs: str = "") -> None:
        super().__init__(message)
        self.image = image
        self.logs = logs


class HealthCheckError(DeploymentError):
    """The service started but did not become healthy in time; the previous version keeps serving."""


class RequestError(DeployKitError, ValueError):
    """The service rejected a request as bad input (HTTP 4xx); ``.details`` lists row, column, problem."""

    def __init__(self, message: str, *, status: int, details: list | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details or []
