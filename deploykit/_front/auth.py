"""API keys inside the front: who may call which route, how often, and how many rows they may explain.

The key file is the deployment's ``keys.json`` in its state folder, written by the host
(:mod:`deploykit._security.keys`, atomically) and re-read here when it changes::

    {"format": 1, "keys": {"3f9a1c2b7d4e": {
        "id": "3f9a1c2b7d4e", "sha256": "<sha256 of the secret>", "scopes": ["predict", "explain"],
        "created": "2025-01-31T10:00:00+00:00", "expires": null, "revoked": null,
        "previous": [{"sha256": "<the secret before a rotation>", "until": "2025-02-01T11:00:00+00:00"}],
        "rate": {"per_second": 100.0, "burst": 200}, "explain_rows": {"rows": 10000, "per_seconds": 3600}}}}

A client sends ``Authorization: Bearer dk_<id>_<secret>``. Only the secret's sha256 is stored, and it
is compared in constant time. ``/livez`` and ``/readyz`` need no key; every other route needs a key
with the scope :data:`ROUTES` gives it, and a route :data:`ROUTES` does not list is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import os
import time
from typing import NamedTuple

KEYS_FILE = "keys.json"
FORMAT = 1
TOKEN_PREFIX = "dk_"
SCOPES = ("predict", "explain", "card", "metrics", "admin")
EXEMPT = frozenset({"/livez", "/readyz"})
# The scopes that open each route (any one of them). /schema is the input contract every caller needs;
# /info (the manifest: libraries, versions, parity) and BentoML's OpenAPI page are for operators.
ROUTES: dict[str, frozenset] = {
    "/predict": frozenset({"predict"}),
    "/predict_proba": frozenset({"predict"}),
    "/explain": frozenset({"explain"}),
    "/card": frozenset({"card"}),
    "/card.json": frozenset({"card"}),
    "/metrics": frozenset({"metrics"}),
    "/schema": frozenset({"predict", "explain", "admin"}),
    "/info": frozenset({"admin"}),
    "/": frozenset({"admin"}),
    "/docs.json": frozenset({"admin"}),
    "/outcomes": frozenset({"admin"}),  # ground truth joined to the captured predictions
}
ADMIN_PREFIX = "/_deploykit/"
REASONS = ("missing", "invalid", "revoked", "expired", "scope")
_AUTHORIZATION = b"authorization"
_DUMMY = hashlib.sha256(b"deploykit: no such key").digest()
logger = logging.getLogger("deploykit.front.auth")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``dk_<id>_<secret>`` → (id, secret); None if it is not shaped like a deploykit key."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, _, secret = token[len(TOKEN_PREFIX):].partition("_")
    return (key_id, secret) if key_id and secret else None


def epoch(text: str | None) -> float | None:
    return None if text is None else dt.datetime.fromisoformat(text).timestamp()


def scopes_for(path: str) -> frozenset | None:
    """The scopes that open ``path`` (any one suffices); None for a route no scope opens."""
    if path.startswith(ADMIN_PREFIX):
        return ROUTES["/"] if "/." not in path and "//" not in path else None
    return ROUTES.get(path)


class Rejection(NamedTuple):
    """A refused request: ``status``, the JSON ``body`` and extra response ``headers`` to send."""

    status: int
    body: bytes
    headers: list
    reason: str


def _rejection(status: int, reason: str, message: str, headers: list | None = None) -> Rejection:
    body = json.dumps({"error": message, "details": []}).encode()
    return Rejection(status, body, headers or [], reason)


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; a take that does not fit says how long to wait."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` tokens and return 0.0, or take none and return the seconds until they are there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if amount <= self.tokens:
            self.tokens -= amount
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.tokens) / self.rate


class _Key:
    __slots__ = ("id", "digests", "scopes", "expires", "revoked", "requests", "rows")

    def __init__(self, record: dict, old: _Key | None, now: float) -> None:
        self.id = record["id"]
        # (digest, valid until): the current secret forever, a rotated one until its overlap ends
        self.digests = [(bytes.fromhex(record["sha256"]), math.inf)] + [
            (bytes.fromhex(p["sha256"]), epoch(p["until"])) for p in record.get("previous", [])]
        self.scopes = frozenset(record.get("scopes", ()))
        self.expires = epoch(record.get("expires"))
        self.revoked = record.get("revoked") is not None
        rate, rows = record.get("rate") or {}, record.get("explain_rows") or {}
        self.requests = _bucket(old.requests if old else None, rate.get("per_second"), rate.get("burst"), now)
        per_second = rows["rows"] / rows["per_seconds"] if rows.get("rows") else None
        self.rows = _bucket(old.rows if old else None, per_second, rows.get("rows"), now)


def _bucket(old: TokenBucket | None, rate, capacity, now: float) -> TokenBucket | None:
    if not rate or not capacity:
        return None
    if old is not None and (old.rate, old.capacity) == (rate, capacity):
        return old  # a reload keeps what the key has already spent
    return TokenBucket(float(rate), float(capacity), now)


class Authenticator:
    """Checks each request's key, scope and limits against the deployment's ``keys.json``.

    Parameters
    ----------
    state_dir : str or Path
        The deployment's state folder (holding ``keys.json``).
    name : str
        The deployment's name, for the metrics' ``name`` label.
    """

    def __init__(self, state_dir, name: str = "", *, clock=time.monotonic, wall=time.time) -> None:
        self.path = os.path.join(os.fspath(state_dir), KEYS_FILE)
        self.name, self.clock, self.wall = name, clock, wall
        self.keys: dict[str, _Key] = {}
        self._stamp: tuple | None = None
        self.rejected = dict.fromkeys(REASONS, 0)
        self.rate_limited: dict[str, int] = {}

    # -- the key file --------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read ``keys.json`` if it was replaced or changed since the last read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.keys, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, "rb") as handle:
                document = json.loads(handle.read())
            now = self.clock()
            self.keys = {k: _Key(r, self.keys.get(k), now) for k, r in document.get("keys", {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:  # keep the last good keys, say why
            logger.error("could not read %s, keeping the keys read before: %s", self.path, exc)
        self._stamp = stamp

    # -- one request ---------------------------------------------------------------------------------
    def check(self, path: str, method: str, headers, body: bytes | None = None):
        """``(key_id, None)`` to let the request through, or ``(None, Rejection)`` to answer it with.

        ``path`` is the path the front forwards (without the query string), ``headers`` the ASGI list
        of (bytes, bytes) pairs; ``body`` (the raw request body) is needed only to count ``/explain``
        rows. Exempt routes pass as ``(None, None)``.
        """
        if path in EXEMPT:
            return None, None
        self.reload()
        key, rejection = self._authenticate(headers)
        if rejection is None:
            rejection = self._authorize(key, path, method) or self._limit(key, path, body)
        if rejection is not None:
            if rejection.reason in self.rejected:
                self.rejected[rejection.reason] += 1
            return None, rejection
        return key.id, None

    def _authenticate(self, headers):
        token = _bearer(headers)
        if token is None:
            return None, _rejection(401, "missing", "this endpoint needs an API key: send `Authorization: Bearer "
                                    "dk_...`; `deploykit keys create NAME --scope ...` makes one",
                                    [(b"www-authenticate", b'Bearer realm="deploykit"')])
        parsed = parse_token(token)
        key = self.keys.get(parsed[0]) if parsed else None
        digest = hashlib.sha256(parsed[1].encode()).digest() if parsed else _DUMMY
        now = self.wall()
        matched = False
        for expected, until in key.digests if key else [(_DUMMY, math.inf)]:
            matched |= hmac.compare_digest(digest, expected) and now < until
        if key is None or not matched:
            return None, _invalid("invalid", "the API key is not valid for this service")
        if key.revoked:
            return None, _invalid("revoked", f"API key {key.id} was revoked")
        if key.expires is not None and now >= key.expires:
            return None, _invalid("expired", f"API key {key.id} has expired")
        return key, None

    def _authorize(self, key: _Key, path: str, method: str) -> Rejection | None:
        needed = scopes_for(path)
        if needed is None:
            return _rejection(403, "scope", f"{method} {path} is not an endpoint of this service")
        if key.scopes.isdisjoint(needed):
            return _rejection(403, "scope", f"API key {key.id} lacks the scope for {path}: it needs "
                              f"{' or '.join(sorted(needed))} and has {', '.join(sorted(key.scopes)) or 'none'}")
        return None

    def _limit(self, key: _Key, path: str, body: bytes | None) -> Rejection | None:
        now = self.clock()
        wait = key.requests.take(1, now) if key.requests else 0.0
        if wait:
            return self._too_many(key, wait, f"API key {key.id} is over its rate limit of "
                                  f"{key.requests.rate:g} requests/s (burst {key.requests.capacity:g})")
        if path == "/explain" and key.rows is not None and body is not None:
            rows = count_rows(body)
            wait = key.rows.take(rows, now)
            if wait:
                hours = key.rows.capacity / key.rows.rate / 3600
                return self._too_many(key, wait, f"API key {key.id} is over its /explain quota of "
                                      f"{key.rows.capacity:g} rows per {hours:g} h (this request has {rows})")
        return None

    def _too_many(self, key: _Key, wait: float, message: str) -> Rejection:
        self.rate_limited[key.id] = self.rate_limited.get(key.id, 0) + 1
        seconds = max(1, math.ceil(wait)) if wait != math.inf else 3600
        return _rejection(429, "rate", message, [(b"retry-after", str(seconds).encode())])

    # -- metrics -------------------------------------------------------------------------------------
    def metrics(self) -> str:
        """Prometheus text for ``deploykit_auth_rejected_total`` and ``deploykit_rate_limited_total``."""
        name = _label(self.name)
        lines = ["# HELP deploykit_auth_rejected_total Requests the front refused for their API key, by reason.",
                 "# TYPE deploykit_auth_rejected_total counter"]
        lines += [f'deploykit_auth_rejected_total{{name="{name}",reason="{r}"}} {n}' for r, n in self.rejected.items()]
        lines += ["# HELP deploykit_rate_limited_total Requests refused with 429 (rate limit or /explain row quota).",
                  "# TYPE deploykit_rate_limited_total counter"]
        lines += [f'deploykit_rate_limited_total{{name="{name}",key_id="{_label(k)}"}} {n}'
                  for k, n in sorted(self.rate_limited.items())]
        return "\n".join(lines) + "\n"


def _invalid(reason: str, message: str) -> Rejection:
    return _rejection(401, reason, message, [(b"www-authenticate", b'Bearer realm="deploykit", error="invalid_token"')])


def _bearer(headers) -> str | None:
    for key, value in headers:
        if key.lower() == _AUTHORIZATION:
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


def count_rows(body: bytes) -> int:
    """How many rows an /explain body carries (1 if it cannot be read: the service will say why)."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 1
    rows = parsed.get("instances", parsed) if isinstance(parsed, dict) else parsed
    return max(1, len(rows)) if isinstance(rows, list) else 1


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
