"""How a candidate version shares a deployment's traffic: shadow, canary, A/B.

The routing table's ``strategy`` names the kind and its settings; this module is the whole of their
meaning, as data the control plane sends and the front interprets (Seldon Core 2's experiments are the
model: a resource that one router reads, not code in the release steps)::

    {"kind": "replace"}                                         live answers everything
    {"kind": "shadow", "sample": 1.0}                           live answers; a copy of each sampled
                                                                request goes to the candidate
    {"kind": "canary", "traffic": 0.1, "steps": [0.1, 0.5, 1.0], "interval": 60,
     "guardrails": {"error_rate": 0.01, "p99_ms": 250, "min_requests": 50}, "step": 0, "started": T}
                                                                the candidate answers ``traffic`` of the
                                                                requests; steps advance while the
                                                                guardrails hold
    {"kind": "ab", "traffic": 0.5, "sticky": "customer_id", "strip": true, "experiment": "churn:v4"}
                                                                a unit (a field of the instance, or the
                                                                x-deploykit-unit header) always gets the
                                                                same variant; a sticky field the model
                                                                does not take is removed before forwarding

Assignment in an A/B test is ``sha256(f"{experiment}:{unit}") mod 10,000 < traffic * 10,000``: stable
across processes and restarts, unlike Python's ``hash()``. A request without a unit is assigned at
random.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

KINDS = ("replace", "shadow", "canary", "ab")
BUCKETS = 10_000
UNIT_HEADER = b"x-deploykit-unit"
DEFAULT_GUARDRAILS = {"error_rate": 0.01, "p99_ms": None, "min_requests": 50}


class StrategyError(ValueError):
    """A strategy the front cannot use; the message names the setting."""


@dataclass
class Decision:
    """Who answers a request, and who gets a copy of it (for a shadow, or to pair a canary's answer)."""

    variant: str  # "live" or "candidate"
    answer: object  # the routes.Variant that answers
    mirror: object | None = None  # a routes.Variant that gets a copy, or None
    body: bytes | None = None  # the body to forward, when it is not the request's own


def _fraction(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise StrategyError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise StrategyError(f"{name} must be between 0 and 1, got {value}")
    return value


def normalise(strategy: dict) -> dict:
    """The strategy with its defaults filled in and every setting checked."""
    kind = strategy.get("kind", "replace")
    if kind not in KINDS:
        raise StrategyError(f"strategy {kind!r} is not one of {', '.join(KINDS)}")
    out = dict(strategy, kind=kind)
    if kind == "shadow":
        out["sample"] = _fraction(strategy.get("sample", 1.0), "sample")
    elif kind == "canary":
        steps = strategy.get("steps")
        if steps is not None:
            steps = [_fraction(s, "each step") for s in steps]
            if not steps or steps != sorted(steps) or steps[-1] != 1.0:
                raise StrategyError(f"steps must rise and end at 1.0 (the candidate then takes all traffic), got {steps}")
        out["steps"] = steps
        out["traffic"] = _fraction(strategy.get("traffic", steps[0] if steps else 0.1), "traffic")
        out["interval"] = float(strategy.get("interval", 60))
        if out["interval"] <= 0:
            raise StrategyError(f"interval must be a positive number of seconds, got {out['interval']}")
        guardrails = {**DEFAULT_GUARDRAILS, **(strategy.get("guardrails") or {})}
        unknown = sorted(set(guardrails) - set(DEFAULT_GUARDRAILS))
        if unknown:
            raise StrategyError(f"unknown guardrails {unknown}; the guardrails are {sorted(DEFAULT_GUARDRAILS)}")
        out["guardrails"] = guardrails
        out.setdefault("step", 0)
        out.setdefault("state", "running")
    elif kind == "ab":
        out["traffic"] = _fraction(strategy.get("traffic", 0.5), "traffic")
        out["sticky"] = strategy.get("sticky")
        out["strip"] = bool(strategy.get("strip", False))
        if not strategy.get("experiment"):
            raise StrategyError("an A/B test needs an experiment name (it seeds the assignment)")
    return out


def assigned_to_candidate(experiment: str, unit: str, traffic: float) -> bool:
    """The stable assignment of ``unit``: its sha256 bucket falls below ``traffic``."""
    digest = hashlib.sha256(f"{experiment}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS < traffic * BUCKETS


def unit_of(headers, body: bytes, sticky: str | None, strip: bool = False) -> tuple[str | None, bytes | None]:
    """The request's unit (the ``x-deploykit-unit`` header, else the ``sticky`` field of its first
    instance), and the body with that field removed from every instance when ``strip`` (the model does
    not take it), else None."""
    unit = next((value.decode("utf-8", "replace") for name, value in headers if name == UNIT_HEADER and value), None)
    if not sticky or (unit is not None and not strip):
        return unit, None
    try:
        parsed = json.loads(body)
        instances = parsed["instances"]
        value = instances[0].get(sticky) if isinstance(instances[0], dict) else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return unit, None  # the version answers what is wrong with the body
    if unit is None and value is not None:
        unit = str(value)
    if not strip:
        return unit, None
    for instance in instances:
        if isinstance(instance, dict):
            instance.pop(sticky, None)
    return unit, json.dumps(parsed).encode()


def decide(routes, headers, body: bytes) -> Decision | None:
    """Who answers this request under ``routes``; None when no version serves yet."""
    live, candidate, strategy = routes.live, routes.candidate, routes.strategy
    if live is None:
        return None
    kind = strategy.get("kind")
    if candidate is None or kind == "replace":
        return Decision("live", live)
    if kind == "shadow":
        return Decision("live", live, candidate if random.random() < strategy["sample"] else None)
    if kind == "canary":
        if strategy.get("state") == "running" and random.random() < strategy["traffic"]:
            return Decision("candidate", candidate, live)  # live's answer to the same request pairs it
        return Decision("live", live)
    unit, stripped = unit_of(headers, body, strategy.get("sticky"), strategy.get("strip", False))
    hit = assigned_to_candidate(strategy["experiment"], unit, strategy["traffic"]) if unit is not None \
        else random.random() < strategy["traffic"]
    return Decision("candidate", candidate, body=stripped) if hit else Decision("live", live, body=stripped)
