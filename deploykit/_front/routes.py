"""The routing table of one deployment: which version answers, and where it listens.

The control plane (``deploykit._release``) sends the front a table like::

    {"format": 1, "name": "churn", "generation": 7,
     "live": {"version": "3", "upstreams": ["http://127.0.0.1:41234"], "instance": "v3-1f2e3d"},
     "candidate": null,
     "strategy": {"kind": "replace"}}

``live`` answers every request unless ``strategy`` gives ``candidate`` a share of them, or copies
(shadow, canary, A/B: :mod:`.strategy`); the front interprets the table, the release steps only change
it. Each variant may list several upstreams (workers or replicas), used in turn. ``generation`` grows
with every change, so a status read tells which table is in force.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .strategy import StrategyError, normalise

FORMAT = 1


class RoutesError(ValueError):
    """A routing table the front cannot use; the message names the field."""


@dataclass
class Variant:
    """One version and the upstream addresses it answers on."""

    version: str
    upstreams: list[str]
    instance: str = ""  # which running copy of the version (the target's name for it)
    max_body: int | None = None  # the version's own request-body limit: the front refuses larger bodies unread
    _turn: itertools.cycle = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise RoutesError(f"version {self.version} lists no upstream")
        for url in self.upstreams:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise RoutesError(f"upstream {url!r} of version {self.version} is not http://HOST:PORT")
        self._turn = itertools.cycle(self.upstreams)

    def next_upstream(self) -> str:
        return next(self._turn)

    def to_dict(self) -> dict:
        data = {"version": self.version, "upstreams": list(self.upstreams), "instance": self.instance}
        if self.max_body is not None:
            data["max_body"] = self.max_body
        return data

    @classmethod
    def from_dict(cls, data: dict | None, role: str) -> Variant | None:
        if data is None:
            return None
        try:
            max_body = data.get("max_body")
            return cls(version=str(data["version"]), upstreams=[str(u) for u in data["upstreams"]],
                       instance=str(data.get("instance", "")), max_body=None if max_body is None else int(max_body))
        except (KeyError, TypeError) as exc:
            raise RoutesError(f"{role} must be {{'version': ..., 'upstreams': [...]}}: {exc}") from None


@dataclass
class Routes:
    """The table in force."""

    name: str
    live: Variant | None
    candidate: Variant | None = None
    strategy: dict = field(default_factory=lambda: {"kind": "replace"})
    generation: int = 0

    @classmethod
    def empty(cls, name: str) -> Routes:
        return cls(name=name, live=None)

    @classmethod
    def from_dict(cls, data: dict) -> Routes:
        if not isinstance(data, dict) or data.get("format", FORMAT) != FORMAT:
            raise RoutesError(f"a routing table is an object with format {FORMAT}")
        try:
            strategy = normalise(data.get("strategy") or {"kind": "replace"})
        except StrategyError as exc:
            raise RoutesError(str(exc)) from None
        return cls(name=str(data.get("name", "")), live=Variant.from_dict(data.get("live"), "live"),
                   candidate=Variant.from_dict(data.get("candidate"), "candidate"), strategy=strategy,
                   generation=int(data.get("generation", 0)))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "name": self.name, "generation": self.generation,
                "live": self.live.to_dict() if self.live else None,
                "candidate": self.candidate.to_dict() if self.candidate else None, "strategy": self.strategy}

    def max_body(self, ceiling: int) -> int:
        """The largest body a routed version accepts (``ceiling`` when one does not say, or none is routed)."""
        stated = [v.max_body for v in (self.live, self.candidate) if v is not None]
        return ceiling if not stated or None in stated else min(ceiling, max(stated))

    def upstreams(self) -> set[str]:
        return {u for v in (self.live, self.candidate) if v for u in v.upstreams}
