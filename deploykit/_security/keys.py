"""``deploykit.keys``: API keys of a deployment, and the public keys this machine trusts for signatures.

API keys live in the deployment's state folder (``$DEPLOYKIT_HOME/deployments/NAME/keys.json``, the
format of :mod:`deploykit._front.auth`); the front re-reads the file when it changes, so a key made,
revoked or rotated here takes effect without a restart. A key's secret is shown once, by
:func:`create` or :func:`rotate`; only its sha256 is kept.

>>> import deploykit
>>> new = deploykit.keys.create("churn", scopes=["predict", "explain"], expires="30d")  # doctest: +SKIP
>>> new.token                                                                         # doctest: +SKIP
'dk_3f9a1c2b7d4e_...'
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets
from dataclasses import dataclass, field

from .. import _paths
from .._front import auth
from ..exceptions import ConfigError
from .signing import public_key, trust, trusted_keys, untrust  # noqa: F401 - the trust list's verbs sit here too

__all__ = ["NewKey", "create", "list", "public_key", "revoke", "rotate", "trust", "trusted", "untrust"]

DEFAULT_RATE = {"per_second": 100.0, "burst": 200}
DEFAULT_EXPLAIN_ROWS = {"rows": 10_000, "per_seconds": 3600}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class NewKey:
    """A key just made or rotated: ``token`` (``dk_<id>_<secret>``) is shown this once and stored nowhere."""

    name: str
    id: str
    token: str = field(repr=False)
    scopes: builtins.list
    expires: str | None

    def __repr__(self) -> str:
        until = f"expires {self.expires}" if self.expires else "does not expire"
        return (f"<API key {self.id} for {self.name} · {', '.join(self.scopes)} · {until}>\n{self.token}\n"
                "(shown once: store it now; deploykit keeps only its hash)")


def parse_duration(text: str | dt.timedelta) -> dt.timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"45s"`` → a timedelta."""
    if isinstance(text, dt.timedelta):
        return text
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"duration {text!r} is not understood; write a number and a unit: 45s, 90m, 12h, 30d or 2w")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@contextlib.contextmanager
def _editing(name: str):
    """The key file's document, written back atomically when the block ends; one writer at a time."""
    folder = _paths.deployment_dir(name)
    with open(folder / f"{auth.KEYS_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / auth.KEYS_FILE
        document = json.loads(path.read_text()) if path.exists() else {"format": auth.FORMAT, "keys": {}}
        yield document
        scratch = folder / f".{auth.KEYS_FILE}.{os.getpid()}.tmp"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(document, indent=1) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
        _paths.share(path)  # a Docker front's user owns the folder: it must read the new file


def _scopes(scopes) -> builtins.list:
    given = [s.strip() for s in (scopes.split(",") if isinstance(scopes, str) else scopes) if s.strip()]
    unknown = [s for s in given if s not in auth.SCOPES]
    if unknown or not given:
        raise ConfigError(f"scope(s) {unknown or given} not known; choose from {', '.join(auth.SCOPES)}")
    return sorted(set(given), key=auth.SCOPES.index)


def _limits(rate: float | None, burst: int | None, explain_rows: int | None) -> dict:
    """Requests/s and burst, /explain rows per hour; 0 turns a limit off."""
    rate = DEFAULT_RATE["per_second"] if rate is None else rate
    burst = burst or max(1, int(rate * 2))
    rows = DEFAULT_EXPLAIN_ROWS["rows"] if explain_rows is None else explain_rows
    return {"rate": {"per_second": float(rate), "burst": int(burst)} if rate else None,
            "explain_rows": {"rows": int(rows), "per_seconds": 3600} if rows else None}


def create(name: str, scopes="predict", *, expires: str | None = None, rate: float | None = None,
           burst: int | None = None, explain_rows: int | None = None, label: str | None = None) -> NewKey:
    """Make an API key for deployment ``name``; the token is in the result, and nowhere else.

    Parameters
    ----------
    name : str
        The deployment (it need not be running: the key waits in its state folder).
    scopes : str or list of str
        Any of ``predict`` (/predict, /predict_proba), ``explain``, ``card``, ``metrics``, ``admin``
        (/info, /, /_deploykit/...); ``/schema`` is open to predict, explain and admin keys.
    expires : str, optional
        A lifetime such as ``"30d"`` or ``"12h"``; default: never.
    rate, burst : optional
        Requests per second and burst (default 100/s, burst twice the rate); ``rate=0``: no limit.
    explain_rows : int, optional
        Rows per hour this key may send to /explain (default 10000); 0: no quota.
    label : str, optional
        What the key is for, shown by :func:`list`.

    Examples
    --------
    >>> deploykit.keys.create("churn", scopes="predict,explain", expires="30d").token  # doctest: +SKIP
    """
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = _now()
    record = {"id": key_id, "sha256": auth.hash_secret(secret), "scopes": _scopes(scopes),
              "created": now.isoformat(), "expires": (now + parse_duration(expires)).isoformat() if expires else None,
              "revoked": None, "previous": [], "label": label, **_limits(rate, burst, explain_rows)}
    with _editing(name) as document:
        document["keys"][key_id] = record
    _audit(name, "key_create", {"key_id": key_id, "scopes": record["scopes"], "expires": record["expires"]})
    return NewKey(name, key_id, f"{auth.TOKEN_PREFIX}{key_id}_{secret}", record["scopes"], record["expires"])


def _find(document: dict, name: str, key_id: str) -> dict:
    if key_id not in document["keys"]:
        known = ", ".join(document["keys"]) or "none"
        raise ConfigError(f"deployment {name!r} has no API key {key_id!r} (its keys: {known}); `deploykit keys list {name}`")
    return document["keys"][key_id]


def revoke(name: str, key_id: str) -> None:
    """Revoke key ``key_id`` of ``name`` now (every secret of it, rotated ones included).

    Examples
    --------
    >>> deploykit.keys.revoke("churn", "3f9a1c2b7d4e")   # doctest: +SKIP
    """
    with _editing(name) as document:
        _find(document, name, key_id)["revoked"] = _now().isoformat()
    _audit(name, "key_revoke", {"key_id": key_id})


def rotate(name: str, key_id: str, *, overlap: str | dt.timedelta = "1h") -> NewKey:
    """Give key ``key_id`` a new secret; the old one keeps working for ``overlap`` (``"0s"``: not at all).

    Examples
    --------
    >>> deploykit.keys.rotate("churn", "3f9a1c2b7d4e", overlap="1h").token   # doctest: +SKIP
    'dk_3f9a1c2b7d4e_...'
    """
    secret, now = secrets.token_urlsafe(32), _now()
    with _editing(name) as document:
        record = _find(document, name, key_id)
        if record.get("revoked"):
            raise ConfigError(f"API key {key_id} of {name!r} is revoked; make a new one with `deploykit keys create`")
        until = (now + parse_duration(overlap)).isoformat()
        live = [p for p in record.get("previous", []) if auth.epoch(p["until"]) > now.timestamp()]
        record["previous"] = [*live, {"sha256": record["sha256"], "until": until}]
        record["sha256"] = auth.hash_secret(secret)
    _audit(name, "key_rotate", {"key_id": key_id, "old_secret_valid_until": until})
    return NewKey(name, key_id, f"{auth.TOKEN_PREFIX}{key_id}_{secret}", record["scopes"], record["expires"])


def _status(record: dict, now: float) -> str:
    if record.get("revoked"):
        return "revoked"
    if record.get("expires") and auth.epoch(record["expires"]) <= now:
        return "expired"
    return "active"


def list(name: str):  # noqa: A001 - deploykit.keys.list reads as what it does
    """The API keys of ``name`` as a DataFrame: id, scopes, status, created, expires, limits (never secrets).

    Examples
    --------
    >>> deploykit.keys.list("churn")[["id", "scopes", "status"]]   # doctest: +SKIP
    """
    import pandas as pd

    path = _paths.deployment_dir(name) / auth.KEYS_FILE
    records = json.loads(path.read_text())["keys"].values() if path.exists() else []
    now = _now().timestamp()
    rows = [{"id": r["id"], "label": r.get("label"), "scopes": ",".join(r["scopes"]), "status": _status(r, now),
             "created": r["created"],
             "expires": r.get("expires"), "revoked": r.get("revoked"),
             "old_secret_until": max((p["until"] for p in r.get("previous", [])), default=None),
             "rate": f"{r['rate']['per_second']:g}/s burst {r['rate']['burst']}" if r.get("rate") else "unlimited",
             "explain_rows": f"{r['explain_rows']['rows']}/h" if r.get("explain_rows") else "unlimited"}
            for r in records]
    return pd.DataFrame(rows, columns=["id", "label", "scopes", "status", "created", "expires", "revoked",
                                       "old_secret_until", "rate", "explain_rows"])


CLIENT_TOKEN = "client.token"


def client_token(name: str, *, make: bool = False) -> str | None:
    """The token this machine's own clients of ``name`` send (``Deployment.predict``, the panel, the CLI).

    Made with ``make=True`` when a deployment first needs keys (``deploy(auth=True)``, or a host beyond
    this machine): every scope, no rate limit, labelled as this machine's; kept, 0600, in the deployment's
    folder. None when there is none: the deployment does not ask for keys. Revoke it like any key.
    """
    path = _paths.deployment_dir(name) / CLIENT_TOKEN
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        if not make:
            return None
    new = create(name, scopes=builtins.list(auth.SCOPES), rate=0, explain_rows=0,
                 label="this machine's own client (deploykit.Deployment, panel, CLI)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(new.token + "\n")
    return new.token


def trusted():
    """The public keys whose package signatures this machine accepts, as a DataFrame."""
    import pandas as pd

    rows = [{"key_id": kid, "name": e["name"], "source": e["source"], "public_key": e["public_key"]}
            for kid, e in trusted_keys().items()]
    return pd.DataFrame(rows, columns=["key_id", "name", "source", "public_key"])


def _audit(name: str, action: str, what: dict) -> None:
    from .audit import record_action

    record_action(name, action, what)

