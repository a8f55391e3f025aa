"""Errors the serving runtime raises; re-exported by :mod:`deploykit.exceptions`."""

from __future__ import annotations


class DeployKitError(Exception):
    """Root of every error deploykit raises on purpose."""


class IntegrityError(DeployKitError, ValueError):
    """An artifact's sha256 differs from the one recorded when it was written: it will not be loaded."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InputError(DeployKitError, ValueError):
    """A request does not fit the model's input schema; becomes an HTTP 4xx, never a 5xx."""

    def __init__(self, message: str, details: list[dict] | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.details = details or []
        self.status = status

    def to_json(self) -> dict:
        return {"error": str(self), "details": self.details}
