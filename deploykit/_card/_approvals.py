"""Review decisions on a model card: who approved (or rejected) which card, in what role, and when.

A decision is bound to the sha256 of the card file it was made on. Decisions are made after
packaging, and the card's sha256 is in the package manifest, so they cannot live in the card: they
are kept beside the package, in ``packages/NAME/VERSION/approvals.json``, an append-only list.
When a card is loaded from a package they are read back and shown at the top of every format.

The author is recorded in the card when the model is packaged (``review.author``); a reviewer who
is the author is refused. Under the regulated profiles (:data:`REGULATED`) a deploy needs an
approval, by someone other than the author, of the card being deployed.

Each decision is signed with the reviewer's Ed25519 key (:mod:`deploykit._security.signing`: the
key given as ``key=``, else ``$DEPLOYKIT_SIGNING_KEY``, else this machine's own) over its canonical
fields (:func:`payload`). When decisions are read, every signature is checked: a record edited after
it was signed, or carrying a forged signature, is refused (:class:`~deploykit.IntegrityError` naming
it). A valid signature by a key this machine does not trust (``deploykit keys trust``) is shown as
such, and like an unsigned record it does not count towards the deploy gate.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ..exceptions import CardValidationError, ConfigError, IntegrityError

FILE = "approvals.json"
FORMAT = 1
APPROVED, REJECTED, CONDITIONS = "approved", "rejected", "conditions"
DECISIONS = (APPROVED, REJECTED, CONDITIONS)
REGULATED = ("eu-ai-act-high-risk", "us-bank-mrm")
_SIGNED_FIELDS = ("name", "version", "card_sha256", "model_sha256", "reviewer", "role", "decision", "notes", "time")
SOURCES = {
    "eu-ai-act-high-risk": "EU AI Act Annex IV(2)(g) (test reports dated and signed by the responsible persons); Art. 17(1)(d)",
    "us-bank-mrm": "SR 26-2 (validation and approval independent of model development; supersedes SR 11-7)",
}


# -- signing ------------------------------------------------------------------------------------------------
def sign(payload: bytes, key: Any = None) -> dict:
    """The reviewer's Ed25519 signature over a decision's canonical bytes.

    ``key``: a path to a PEM Ed25519 private key (or the key itself); default ``$DEPLOYKIT_SIGNING_KEY``,
    else this machine's signing key (made on first use).
    """
    from .._security.signing import sign as _sign

    return _sign(payload, key)


def verify(payload: bytes, signature: dict | None) -> str | None:
    """The key id that signed ``payload``, None for an unsigned decision; IntegrityError if it does not match.

    The signature is checked with the public key it carries, so a decision signed by a key this machine
    does not trust still reads (see :func:`trusted`); one changed after signing, or whose signature
    names another key than it carries, does not.
    """
    if signature is None:
        return None
    from .._runtime.signature import verify_signature

    return verify_signature(payload, signature, None, "this decision")


def trusted(key_ids: set[str]) -> set[str]:
    """Those of ``key_ids`` this machine trusts (its own key, ``deploykit keys trust``, the environment)."""
    if not key_ids:
        return set()
    from .._security.signing import trusted_keys

    return key_ids & set(trusted_keys())


def payload(record: dict) -> bytes:
    """The canonical bytes a decision's signature covers: its fields, sorted, compact JSON."""
    return json.dumps({k: record.get(k) for k in _SIGNED_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def check(records: list[dict], where: str) -> list[dict]:
    """Verify each decision's signature; set its ``key_id`` and whether that key is ``trusted`` here.

    Raises :class:`~deploykit.IntegrityError` naming the first decision that was changed after it was
    signed, or whose signature is forged.
    """
    for number, record in enumerate(records, 1):
        try:
            record["key_id"] = verify(payload(record), record.get("signature"))
        except IntegrityError as exc:
            raise IntegrityError(
                f"decision {number} of {where} ({record.get('decision')!r} by {record.get('reviewer')!r} on "
                f"{str(record.get('time'))[:10]}) is refused: {exc}. Restore the file, or remove that decision and "
                "have the reviewer record it again (card.approve(...) or `deploykit card approve`)",
                path=where) from None
    keys = trusted({r["key_id"] for r in records if r["key_id"]})
    for record in records:
        record["trusted"] = record["key_id"] in keys
    return records


def counts(record: dict) -> bool:
    """Whether a decision counts: signed, by a key this machine trusts."""
    return bool(record.get("signature")) and record.get("trusted") is True


def signer(record: dict) -> str:
    """How a decision is signed, as every format shows it."""
    if not record.get("signature"):
        return "unsigned"
    kid = record.get("key_id") or record["signature"].get("key_id")
    return f"signed by {kid}" + ("" if record.get("trusted") else " (a key this machine does not trust)")


# -- the store -----------------------------------------------------------------------------------------------
def path(package_dir: Path) -> Path:
    return Path(package_dir) / FILE


def read(package_dir: Path | None) -> list[dict]:
    """The decisions recorded for a package version, oldest first, each checked by :func:`check`."""
    if package_dir is None or not path(package_dir).is_file():
        return []
    return check(json.loads(path(package_dir).read_text())["approvals"], str(path(package_dir)))


def record(package_dir: Path, card, *, reviewer: str, role: str, decision: str, notes: str | None,
           key: Any = None) -> dict:
    """Check a decision, sign it with the reviewer's ``key``, append it to ``approvals.json`` and the audit trail."""
    from .._security.audit import record_action
    from ._content import placeholder, same_person

    data = card.to_dict()
    reviewer, role, notes = (reviewer or "").strip(), (role or "").strip(), (notes or "").strip() or None
    if decision not in DECISIONS:
        raise ConfigError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    for what, value in (("reviewer", reviewer), ("role", role)):
        if not value or placeholder(value):
            raise ConfigError(f"{what} {value!r} does not say who decides; give a name (and e-mail), e.g. "
                              f"reviewer='Ana Ruiz <ana.ruiz@bank.example>', role='model validation'")
    if decision != APPROVED and not notes:
        raise ConfigError(f"a decision of {decision!r} needs notes saying why, or which conditions apply")
    author = (data.get("review") or {}).get("author")
    if same_person(reviewer, author):
        raise ConfigError(f"{reviewer!r} is the author of {card.name} v{card.version} (recorded at packaging from "
                          f"{author.get('source')}): a model cannot be approved by the person who built it; ask an "
                          "independent reviewer")
    entry = {"name": card.name, "version": card.version, "card_sha256": card.sha256, "model_sha256": card.model_sha256,
             "reviewer": reviewer, "role": role, "decision": decision, "notes": notes,
             "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    entry["signature"] = sign(payload(entry), key)
    existing = json.loads(path(package_dir).read_text())["approvals"] if path(package_dir).is_file() else []
    path(package_dir).write_text(json.dumps({"format": FORMAT, "approvals": [*existing, entry]}, indent=1,
                                            ensure_ascii=False) + "\n")
    record_action(card.name, "approve", {"version": str(card.version), "card_sha256": card.sha256, "reviewer": reviewer,
                                         "role": role, "decision": decision, "signed_by": entry["signature"]["key_id"]})
    return entry


# -- what the decisions say ----------------------------------------------------------------------------------
def standing(approvals: list[dict], card_sha256: str, author: dict | None) -> dict:
    """The review status of one card: the latest counted decision of each independent reviewer on *this* card.

    A decision counts when it is signed by a trusted key (:func:`counts`); the others on this card are
    listed as ``unverified``, by reviewer, and change nothing.
    """
    from ._content import same_person

    current = [a for a in approvals if a["card_sha256"] == card_sha256 and not same_person(a["reviewer"], author)]
    latest = {a["reviewer"].casefold(): a for a in current if counts(a)}
    unverified = {a["reviewer"].casefold(): a for a in current if not counts(a) and a["reviewer"].casefold() not in latest}
    decisions = list(latest.values())
    if any(d["decision"] == REJECTED for d in decisions):
        status = REJECTED
    elif any(d["decision"] == CONDITIONS for d in decisions):
        status = CONDITIONS
    elif decisions:
        status = APPROVED
    else:
        status = "not reviewed"
    stale = [a for a in approvals if a["card_sha256"] != card_sha256]
    return {"status": status, "decisions": decisions, "unverified": list(unverified.values()), "stale": stale,
            "approved": status in (APPROVED, CONDITIONS), "signed": bool(decisions)}


def require(card, profile: str) -> None:
    """Refuse a deploy under a regulated profile without an independent, signed approval of this card."""
    if profile not in REGULATED:
        return
    data = card.to_dict()
    review = standing(card.approvals, card.sha256, (data.get("review") or {}).get("author"))
    if review["approved"]:
        return
    from ._profiles import ERROR, Finding

    name = f"{card.name} v{card.version}"
    fix = f"deploykit card approve {card.name} --version {card.version} --reviewer 'NAME <EMAIL>' --role ROLE --decision approved"
    if review["status"] == REJECTED:
        why = "its card was rejected by " + ", ".join(f"{d['reviewer']} ({d['role']})" for d in review["decisions"]
                                                        if d["decision"] == REJECTED)
    elif review["unverified"]:
        why = ("no decision on this card is signed by a key this machine trusts: "
               + "; ".join(f"{d['reviewer']}'s is {signer(d)}" for d in review["unverified"]))
        fix = ("trust the reviewer's public key (`deploykit keys trust THEIR_KEY.pub`; they print it with `deploykit keys "
               f"public`), or have them record the decision again, signed: {fix}")
    elif review["stale"] or card.approvals:
        why = "no reviewer other than the author has approved this card (sha256 " f"{card.sha256[:12]}…)"
    else:
        why = "nobody has approved its model card"
    finding = Finding(ERROR, "review.approvals", f"{why}: {profile} needs an independent approval of the card being deployed",
                      SOURCES[profile], fix)
    raise CardValidationError(
        f"deploying {name} stopped: {why}. Profile {profile!r} needs an approval, by someone other than the author and "
        f"signed by a trusted key, of this card. A reviewer approves it with card.approve(reviewer=..., role=..., "
        f"decision='approved') or `{fix}`", profile=profile, findings=[finding])


# -- showing them ----------------------------------------------------------------------------------------------
def summary(review: dict) -> str:
    """One line for every format: the review status of the card and who decided what, when, signed by which key."""
    unverified = review.get("unverified", [])
    if not review["decisions"] and not unverified:
        return "not reviewed: no independent approval of this card yet"
    parts = [f"{d['decision']} by {d['reviewer']} ({d['role']}) on {d['time'][:10]}, {signer(d)}"
             for d in review["decisions"]]
    parts += [f"{d['decision']} by {d['reviewer']} ({d['role']}) on {d['time'][:10]}, {signer(d)}: not counted"
              for d in unverified]
    return f"{review['status']}: " + "; ".join(parts)
