"""The card's operations sections, filled from structured data instead of free text.

* ``monitoring_plan`` and ``post_market``: from the monitoring reference made at packaging
  (:mod:`deploykit._monitor.card`): what is watched per feature, the tests and their thresholds per
  window size, the verdict rule, how to read the report, the metrics and alerts, the review loop.
* ``record_keeping`` (EU AI Act Art. 12), ``access`` and ``signing``: what deploykit itself does,
  read from the constants of the code that does it (:mod:`deploykit._front.audit`, ``.app``,
  ``.capture``, ``.auth``, ``.settings``; :mod:`deploykit._security`), so the card cannot promise
  what the code does not do.
* ``operations``: one line per fact for the Deployment table's Monitoring and Logging rows (and any
  other facts handed over as dicts, e.g. ``operations(monitoring={"drift": "PSI per column, daily"})``).

The user's own ``monitoring``, ``logging`` and ``access_control`` text stays beside these facts.
"""

from __future__ import annotations

import inspect
import json

from .._version import __version__

# Deploy actions the audit trail records: every record_action(...) call in deploykit (a test reads them from the source).
ACTIONS = ("package", "deploy", "promote", "rollback", "stop", "scale", "key_create", "key_revoke", "key_rotate",
           "profile", "approve")
REQUEST_FIELDS = ("seq", "time", "request_id", "version", "variant", "key_id", "method", "path", "status",
                  "input_sha256", "output_sha256")
# deploykit._deploy.LOOPBACK, copied: _deploy imports the card (its deploy gate); tests/test_card_operations.py keeps them equal
LOOPBACK = ("127.0.0.1", "localhost", "::1")
VERIFIED_AT = ("deploykit.deploy / deploykit deploy", "Package.build_image", "ModelCard.load",
               "the served runtime, when it starts")
MEETS = {"record_keeping": "EU AI Act Art. 12 (record-keeping); HIPAA 45 CFR 164.312(b) (audit controls)",
         "monitoring_plan": "EU AI Act Annex IV(9), Art. 72 (post-market monitoring plan); SR 26-2 (ongoing monitoring); "
                            "HIPAA 45 CFR 164.308(a)(1)(ii)(D)"}


def operations(monitoring: dict | None = None, logging: dict | None = None, *, source: str | None = None) -> dict:
    """The ``deployment.operations`` rows: ``{"monitoring": [...], "logging": [...], "source": ...}``.

    Each dict maps what is watched or kept (``"drift"``, ``"retention"``) to how; values may be text,
    numbers, booleans or lists and are shown as text, in the order given.
    """
    return {"monitoring": _rows(monitoring), "logging": _rows(logging), "source": source}


def builtin(reference: dict | None, signer: str | None) -> dict:
    """Every built-in operations section of the card's ``deployment``, and the ``operations`` rows that sum them up.

    ``reference``: the package's monitoring reference (None when none was made); ``signer``: the key id
    that signs the package.
    """
    plan, post = _monitoring(reference)
    record = record_keeping()
    sections = {"monitoring_plan": plan, "post_market": post, "record_keeping": record, "access": access(),
                "signing": signing(signer)}
    source = (f"deploykit {__version__}: the monitoring reference (model/monitor_reference.json) and the constants of "
              "deploykit._front (audit, capture, auth, settings) and deploykit._security")
    sections["operations"] = operations(_monitoring_rows(plan, post), _logging_rows(record), source=source)
    return sections


# -- monitoring ------------------------------------------------------------------------------------------------
def _monitoring(reference: dict | None) -> tuple[dict, dict | None]:
    if reference is None:
        return {"available": False, "reason": "no monitoring reference was made with this card"}, None
    from .._monitor.card import monitoring_section, post_market_section

    capture = capture_defaults()
    plan = {**monitoring_section(reference), "meets": MEETS["monitoring_plan"]}
    return plan, post_market_section(reference, capture=capture["fraction"], retention=capture["retention"])


def _monitoring_rows(plan: dict, post: dict | None) -> dict:
    if not plan["available"]:
        return {}
    from .._monitor.card import LABELS

    by_kind: dict[str, tuple] = {}
    for feature in plan["features"]:
        by_kind.setdefault(feature["kind"], tuple(feature["tests"]))
    groups = (post or {}).get("performance_by_group") or []
    rows = {
        "drift": f"{len(plan['features'])} input features against the {plan['reference']['source']}: "
                 + "; ".join(f"{kind}: {', '.join(LABELS.get(t, t) for t in tests)}" for kind, tests in by_kind.items()),
        "thresholds": plan["thresholds_rule"],
        "verdict": plan["verdict_rule"],
        "prediction drift": plan["prediction"]["what"] if plan["prediction"] else "not monitored (no predictions in the reference)",
        "performance": "from outcomes logged by request id (Deployment.log_outcomes, POST /outcomes), per window with 95% "
                       "intervals" + (f", and per group of {', '.join(groups)}" if groups else ""),
        "report": "Deployment.monitor(window=...), deploykit monitor NAME [--json], %deploy monitor NAME",
        "alerts": ", ".join(a["alert"] for a in post["alerts"]) + f" (Prometheus rules in {post['alerts_file']}, a Grafana "
                  "dashboard beside them)",
    }
    return rows


# -- record-keeping (EU AI Act Art. 12) -------------------------------------------------------------------------
def record_keeping() -> dict:
    """The audit trail and the capture store every deployment keeps, from the front's own constants."""
    from .._front import app, audit, settings
    from .._security.audit import ACTOR_ENV, AUDIT_KEY

    writer = inspect.signature(audit.AuditLog).parameters
    return {
        "meets": MEETS["record_keeping"],
        "audit_log": {
            "file": f"$DEPLOYKIT_HOME/deployments/NAME/{audit.LOG_FILE}",
            "on_by_default": bool(settings.DEFAULTS["audit"]),
            "chain": "append-only JSON lines; each record's hash is sha256(the previous record's hash || its canonical "
                     "JSON), the first chaining from 64 zeros, so a changed, removed or reordered record breaks the chain",
            "requests": {"endpoints": sorted(app.AUDITED), "fields": list(REQUEST_FIELDS),
                         "what": "one record per request, refused ones included, written before the answer is sent; "
                                 "digests (sha256) of the request and answer bodies, never their values"},
            "actions": {"recorded": list(ACTIONS), "fields": ["time", "action", "who", "what"],
                        "who": f"${ACTOR_ENV} (e.g. a CI job's identity), else user@host"},
            "checkpoints": {"algorithm": "ed25519", "every_records": writer["checkpoint_every"].default,
                            "every_seconds": app.CHECKPOINT_SECONDS,
                            "key": f"$DEPLOYKIT_HOME/keys/{AUDIT_KEY}, outside every deployment's folder (the docker "
                                   "target mounts it read-only)",
                            "what": "a signature over the chain's head: whoever rewrites the log cannot re-sign it"},
            "durability": "O_APPEND, one write per record under flock; a request is acknowledged only after its record "
                          "is written, so a kill -9 loses nothing acknowledged",
            "fsync": {"requests": writer["fsync"].default, "interval_seconds": writer["fsync_interval"].default,
                      "actions": "always", "policies": list(audit.FSYNC_POLICIES)},
            "verify": "deploykit audit verify NAME (exit 0, or the first broken record and why)",
            "read": "deploykit audit show NAME; Deployment.audit() as a DataFrame",
        },
        "capture": capture_defaults(),
        "service_logs": "front.log and one log per version in $DEPLOYKIT_HOME/deployments/NAME/logs, kept after a stop "
                        "(Deployment.logs(), deploykit logs NAME)",
    }


def capture_defaults() -> dict:
    """What deploy() captures unless told otherwise (``capture=``, ``capture_retention=``)."""
    from .._front import capture, settings

    kept = capture.Retention()
    days = None if kept.max_age is None else kept.max_age / 86400
    limits = [f"{days:g} days" if days is not None else None, f"at most {kept.max_rows:,} rows" if kept.max_rows else None]
    return {"file": f"$DEPLOYKIT_HOME/deployments/NAME/{capture.FILENAME}",
            "fraction": float(settings.DEFAULTS["capture"]["fraction"]),
            "retention": ", ".join(x for x in limits if x) or "kept until deleted",
            "endpoints": sorted(capture.CAPTURED_ENDPOINTS), "max_body_bytes": capture.MAX_BODY,
            "how": "off the request path through a bounded queue; a full queue drops the capture and counts it "
                   "(deploykit_capture_dropped_total); set with deploy(capture=0..1, capture_retention=...)"}


def _logging_rows(record: dict) -> dict:
    log, capture = record["audit_log"], record["capture"]
    checkpoints, fsync = log["checkpoints"], log["fsync"]
    return {
        "audit trail": f"hash-chained {log['file']} per deployment ({'on' if log['on_by_default'] else 'off'} by default)",
        "per request": f"one record per {', '.join(log['requests']['endpoints'])} request: request id, time, version, "
                       "variant, API key id, status and the sha256 of its input and output",
        "deploy actions": ", ".join(log["actions"]["recorded"]) + ": who, when and what",
        "signed checkpoints": f"Ed25519, every {checkpoints['every_records']:,} records or {checkpoints['every_seconds']:g} s, "
                              f"key {checkpoints['key']}",
        "fsync": f"requests: {fsync['requests']} (every {fsync['interval_seconds']:g} s); deploy actions: {fsync['actions']}",
        "verification": log["verify"],
        "capture store": f"{capture['file']}: {capture['fraction']:.0%} of answered requests, kept {capture['retention']}",
    }


# -- access control and integrity --------------------------------------------------------------------------------
def access() -> dict:
    """API keys as the front enforces them (:mod:`deploykit._front.auth`, limits from :mod:`deploykit._security.keys`)."""
    from .._front import auth
    from .._security.keys import DEFAULT_EXPLAIN_ROWS, DEFAULT_RATE

    return {
        "api_keys": f"Authorization: Bearer {auth.TOKEN_PREFIX}{{id}}_{{secret}}; only each secret's sha256 is stored "
                    f"({auth.KEYS_FILE}, mode 0600) and compared in constant time",
        "scopes": list(auth.SCOPES),
        "routes": {route: sorted(scopes) for route, scopes in auth.ROUTES.items()},
        "exempt": sorted(auth.EXEMPT),
        "unlisted_routes": f"refused; {auth.ADMIN_PREFIX} needs the deployment's admin token",
        "default": f"on whenever the front listens beyond this machine (a host other than {', '.join(LOOPBACK)}: the "
                   "docker target publishes on 0.0.0.0); on localhost, deploy(..., auth=True) or --auth turns it on",
        "rate_limit": DEFAULT_RATE,
        "explain_quota": DEFAULT_EXPLAIN_ROWS,
        "refusals": "401 (missing, invalid, revoked or expired key), 403 (missing scope), 429 with Retry-After (rate "
                    "limit, /explain row quota), in the documented error shape; counted in deploykit_auth_rejected_total "
                    "and deploykit_rate_limited_total",
        "manage": "deploykit keys create NAME --scope predict,explain [--expires 30d]; keys list, revoke, rotate",
    }


def signing(signer: str | None) -> dict:
    """The package signature and the checks that refuse a changed file."""
    return {
        "signed_by": signer,
        "algorithm": "ed25519",
        "covers": "the manifest and the sha256 of every file under model/ (this card included) and of the runtime's code",
        "verified_at": list(VERIFIED_AT),
        "refuses": "a changed or re-hashed file (naming it), an edited manifest, or a signature by a key not in the "
                   "trusted list (deploykit keys trust FILE, untrust KEY_ID)",
        "artifacts": "every artifact's sha256 is also recorded in the manifest and checked before the file is read",
    }


def package_signer() -> str:
    """The key id :func:`deploykit._security.signing.sign_package` signs this package with (the default key)."""
    from .._runtime.signature import key_id, raw_public_key
    from .._security.signing import public_key

    return key_id(raw_public_key(public_key()))


# -- rows --------------------------------------------------------------------------------------------------------
def _rows(facts: dict | None) -> list[dict]:
    return [{"item": str(key), "value": _text(value)} for key, value in (facts or {}).items()]


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return json.dumps(value, ensure_ascii=False)
