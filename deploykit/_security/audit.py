"""The audit trail on the host: record deploy actions, verify a log, read it as a table.

The format and the writer are :mod:`deploykit._front.audit` (the front writes one record per request
into the same file). Checkpoints are signed with the audit key, ``$DEPLOYKIT_HOME/keys/audit.key``:
made on first use, kept out of every deployment's folder, and separate from the package signing key,
because the front must hold it.
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

from .. import _paths
from .._front import audit as _format
from .._runtime import signature as _sig
from .signing import keys_dir, load_or_create_key

AUDIT_KEY = "audit.key"
ACTOR_ENV = "DEPLOYKIT_ACTOR"


def audit_key_path() -> Path:
    """The checkpoint signing key's path (made on first use, 0600)."""
    path = keys_dir() / AUDIT_KEY
    load_or_create_key(path)
    return path


def audit_public_keys(extra=()) -> dict[str, bytes]:
    """The keys whose checkpoints :func:`verify` accepts: this machine's audit key, and ``extra`` public keys."""
    from cryptography.hazmat.primitives import serialization

    own = load_or_create_key(audit_key_path()).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raws = [own, *(_sig.raw_public_key(Path(k).read_text() if Path(str(k)).is_file() else k) for k in extra)]
    return {_sig.key_id(raw): raw for raw in raws}


def who() -> str:
    """Who acts: ``$DEPLOYKIT_ACTOR`` (e.g. a CI job's identity), else ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return os.environ.get(ACTOR_ENV) or f"{user}@{socket.gethostname()}"


def open_log(name: str, **options) -> _format.AuditLog:
    """The writer of ``name``'s log, checkpoints signed with the audit key."""
    return _format.AuditLog(_paths.deployment_dir(name), name=name, key_path=audit_key_path(), **options)


def record_action(name: str, action: str, what: dict) -> dict:
    """Append a deploy action to ``name``'s log, fsynced and checkpointed before returning."""
    with open_log(name, fsync="always") as log:
        return log.action(action, who=who(), what=what)


def log_path(name: str) -> Path:
    return _paths.deployment_dir(name) / _format.LOG_FILE


def verify(name: str, keys=()) -> _format.Verdict:
    """Check ``name``'s chain and checkpoints; ``keys``: more trusted audit public keys (files or base64).

    Examples
    --------
    >>> verdict = verify("churn")          # doctest: +SKIP
    >>> verdict.ok, verdict.records        # doctest: +SKIP
    (True, 1532)
    """
    return _format.verify_file(log_path(name), name, audit_public_keys(keys))


def describe(name: str, verdict: _format.Verdict) -> str:
    """One paragraph for ``deploykit audit verify``."""
    if not verdict.ok:
        return f"audit log of {name}: record {verdict.broken} is broken: {verdict.reason} ({log_path(name)})"
    covered = (f"the last checkpoint covers records 0-{verdict.last_checkpoint}, {verdict.uncovered} after it"
               if verdict.last_checkpoint is not None else "no signed checkpoint yet")
    lines = [f"audit log of {name}: {verdict.records} records, chain intact, {verdict.checkpoints} signed "
             f"checkpoints ({covered})"]
    return "\n".join(lines + [f"note: {note}" for note in verdict.notes])


def frame(name: str):
    """``name``'s audit log as a DataFrame, one row per record, oldest first (``Deployment.audit()``)."""
    import json

    import pandas as pd

    path = log_path(name)
    records = []
    if path.exists():
        with open(path, "rb") as handle:
            records = [json.loads(line) for line in handle if line.endswith(b"\n")]
    columns = ["seq", "time", "kind", "action", "who", "what", "request_id", "version", "variant", "key_id",
               "method", "path", "status", "input_sha256", "output_sha256", "covers", "hash"]
    table = pd.DataFrame(records, columns=columns)
    table["time"] = pd.to_datetime(table["time"], unit="s", utc=True)
    return table
