"""The limits a service holds every request to, set when the package is made.

They live in the manifest under ``"limits"`` (``max_batch`` stays in the schema, where it always was);
a package made before they existed gets the defaults. Each error that enforces one says the limit and
the ``deploykit.package(...)`` argument that raises it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .manifest import Manifest

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one request may be and cost. The defaults fit a 1,000-row batch of a few dozen columns."""

    max_batch: int = 1000  # rows per request
    max_body_bytes: int = 8 * MiB  # size of a request body
    max_depth: int = 16  # JSON nesting; a valid body is 3 deep ({"instances": [{...}]})
    max_string: int = 10_000  # characters of one string value
    explain_seconds: float = 10.0  # an /explain request's cost budget: rows × measured seconds per row
    explain_deadline_seconds: float = 30.0  # waiting and explaining together; then 503 with Retry-After
    explain_concurrency: int = 1  # explanations running at once in one worker

    @classmethod
    def from_manifest(cls, manifest: Manifest | dict, environ: dict | None = None) -> Limits:
        """The package's limits (from a :class:`.manifest.Manifest` or its dict form); ``DEPLOYKIT_LIMITS`` (a
        JSON object, e.g. ``{"explain_deadline_seconds": 5}``) lets an operator change them for one deployment
        without packaging again."""
        given = dict(manifest.get("limits") or {})
        given.setdefault("max_batch", (manifest.get("schema") or {}).get("max_batch", cls.max_batch))
        override = (os.environ if environ is None else environ).get("DEPLOYKIT_LIMITS")
        if override:
            given.update(checked(json.loads(override), "DEPLOYKIT_LIMITS"))
        return cls.of(given)

    @classmethod
    def of(cls, values: dict) -> Limits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def raise_with(self, name: str, value) -> str:
        """How to raise the limit ``name``, e.g. to ``value``: the packaging argument to pass."""
        if name == "max_batch":
            return f"package the model again with max_batch={value}"
        return f"package the model again with limits={{{name!r}: {value}}}"


# The keys a user may set, with what each must be (checked when the package is made).
LIMIT_RULES = {
    "max_body_bytes": (int, 1024, 1 << 31),
    "max_depth": (int, 3, 512),
    "max_string": (int, 1, 1 << 27),
    "explain_seconds": (float, 0.01, 86_400.0),
    "explain_deadline_seconds": (float, 0.1, 86_400.0),
    "explain_concurrency": (int, 1, 64),
}


def checked(values: dict, where: str = "limits") -> dict:
    """``values`` with each limit's type and range checked; ValueError names the first one wrong."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a dict of limits, e.g. {{'max_string': 20000}}, got {values!r}")
    unknown = sorted(set(values) - set(LIMIT_RULES))
    if unknown:
        raise ValueError(f"{where}: unknown limit {unknown[0]!r}; the limits are {', '.join(LIMIT_RULES)}")
    out = {}
    for name, value in values.items():
        kind, low, high = LIMIT_RULES[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and not float(value).is_integer()) or not low <= value <= high:
            raise ValueError(f"{where}[{name!r}] must be {'an integer' if kind is int else 'a number'} from {low:,} "
                             f"to {high:,}, got {value!r}")
        out[name] = kind(value)
    return out
