"""Checking the ``limits={...}`` a package is made with (the served side reads them: ``_runtime/limits.py``)."""

from __future__ import annotations

from ._runtime.limits import Limits, checked
from .exceptions import ConfigError


def package_limits(limits: dict | None, max_batch: int) -> dict:
    """The manifest's ``limits`` entry: the defaults, with the user's values checked and applied."""
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or not 1 <= max_batch <= 1_000_000:
        raise ConfigError(f"max_batch must be an integer from 1 to 1,000,000, got {max_batch!r}")
    if isinstance(limits, dict) and "max_batch" in limits:
        raise ConfigError("max_batch is its own argument: deploykit.package(..., max_batch=N), not limits={'max_batch': N}")
    try:
        given = checked(limits or {})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Limits(max_batch=max_batch, **given).to_dict()
