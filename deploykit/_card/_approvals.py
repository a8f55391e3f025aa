"""Review decisions on a model card: who approved (or rejected) which card, in what role, and when.

A decision is bound to the sha256 of the card file it was made on. Decisions are made after
packaging, and the card's sha256 is in the package manifest, so they cannot live in the card: they
are kept beside the package, in ``packages/NAME/VERSION/approvals.json``, an append-only list.
When a card is loaded from a package they are read back and shown at the top of every format.

The author is recorded in the card when the model is packaged (``review.author``); a reviewer who
is the author is refused. Under the regulated profiles (:data:`REGULATED`) a deploy needs an
approval, by someone other than the author, of the card being deployed.

Every decision passes through :func:`sign` when made and :func:`verify` when read: the one place
where reviewers' signatures plug in.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ..exceptions import CardValidationError, ConfigError

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


# -- signing: the one seam ----------------------------------------------------------------------------------
def sign(payload: bytes) -> dict | None:
    """The reviewer's signature over a decision's canonical bytes; None (unsigned) for now.

    The lead wires this to ``deploykit._security.signing.sign(payload)`` (Ed25519) at merge; until
    then every decision is recorded with ``"signature": None`` and shown as unsigned.
    """
    return None


def verify(payload: bytes, signature: dict | None) -> str | None:
    """The key id that signed ``payload``, None for an unsigned decision; raises IntegrityError if forged.

    The lead wires this to ``deploykit._security.signing.verify(payload, signature)`` at merge; until
    then a signature cannot be checked, so a signed record is refused rather than trusted.
    """
    if signature is None:
        return None
    from ..exceptions import IntegrityError

    raise IntegrityError("this approval carries a signature, but this deploykit cannot verify signatures yet "
                         "(deploykit._security.signing is not wired in); use a deploykit that can")


def payload(record: dict) -> bytes:
    """The canonical bytes a decision's signature covers: its fields, sorted, compact JSON."""
    return json.dumps({k: record.get(k) for k in _SIGNED_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


# -- the store -----------------------------------------------------------------------------------------------
def path(package_dir: Path) -> Path:
    return Path(package_dir) / FILE


def read(package_dir: Path | None) -> list[dict]:
    """The decisions recorded for a package version, oldest first, each checked by :func:`verify`."""
    if package_dir is None or not path(package_dir).is_file():
        return []
    records = json.loads(path(package_dir).read_text())["approvals"]
    for record in records:
        record["key_id"] = verify(payload(record), record.get("signature"))
    return records


def record(package_dir: Path, card, *, reviewer: str, role: str, decision: str, notes: str | None) -> dict:
    """Check a decision, sign it, and append it to the package's ``approvals.json``."""
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
    entry["signature"] = sign(payload(entry))
    existing = json.loads(path(package_dir).read_text())["approvals"] if path(package_dir).is_file() else []
    path(package_dir).write_text(json.dumps({"format": FORMAT, "approvals": [*existing, entry]}, indent=1,
                                            ensure_ascii=False) + "\n")
    return entry


# -- what the decisions say ----------------------------------------------------------------------------------
def standing(approvals: list[dict], card_sha256: str, author: dict | None) -> dict:
    """The review status of one card: the latest decision of each independent reviewer on *this* card."""
    from ._content import same_person

    current = [a for a in approvals if a["card_sha256"] == card_sha256 and not same_person(a["reviewer"], author)]
    latest = {}
    for entry in current:
        latest[entry["reviewer"].casefold()] = entry
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
    return {"status": status, "decisions": decisions, "stale": stale,
            "approved": status in (APPROVED, CONDITIONS), "signed": all(d.get("signature") for d in decisions) and bool(decisions)}


def require(card, profile: str) -> None:
    """Refuse a deploy under a regulated profile without an independent approval of this card."""
    if profile not in REGULATED:
        return
    data = card.to_dict()
    review = standing(card.approvals, card.sha256, (data.get("review") or {}).get("author"))
    if review["approved"]:
        return
    from ._profiles import ERROR, Finding

    name = f"{card.name} v{card.version}"
    if review["status"] == REJECTED:
        why = "its card was rejected by " + ", ".join(f"{d['reviewer']} ({d['role']})" for d in review["decisions"]
                                                        if d["decision"] == REJECTED)
    elif review["stale"] or card.approvals:
        why = "no reviewer other than the author has approved this card (sha256 " f"{card.sha256[:12]}…)"
    else:
        why = "nobody has approved its model card"
    fix = f"deploykit card approve {card.name} --version {card.version} --reviewer 'NAME <EMAIL>' --role ROLE --decision approved"
    finding = Finding(ERROR, "review.approvals", f"{why}: {profile} needs an independent approval of the card being deployed",
                      SOURCES[profile], fix)
    raise CardValidationError(
        f"deploying {name} stopped: {why}. Profile {profile!r} needs an approval, by someone other than the author, of "
        f"this card. A reviewer approves it with card.approve(reviewer=..., role=..., decision='approved') or `{fix}`",
        profile=profile, findings=[finding])


# -- showing them ----------------------------------------------------------------------------------------------
def summary(review: dict) -> str:
    """One line for every format: the review status of the card and who decided what, when."""
    if not review["decisions"]:
        return "not reviewed: no independent approval of this card yet"
    parts = [f"{d['decision']} by {d['reviewer']} ({d['role']}) on {d['time'][:10]}"
             + ("" if d.get("signature") else ", unsigned") for d in review["decisions"]]
    return f"{review['status']}: " + "; ".join(parts)
