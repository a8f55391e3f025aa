"""The ``keys`` and ``audit`` commands of the shared grammar (``deploykit keys ...``, ``%deploy keys ...``).

:mod:`deploykit._cli` adds these arguments to its parser and :mod:`deploykit._commands` calls
:func:`run_keys` / :func:`run_audit`; each returns the core's result, which the CLI prints with
:func:`show_keys` / :func:`show_audit` and the magic displays.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

KEYS_EXAMPLES = (
    ["deploykit keys create churn --scope predict,explain --expires 30d", "deploykit keys list churn",
     "deploykit keys revoke churn 3f9a1c2b7d4e", "deploykit keys rotate churn 3f9a1c2b7d4e --overlap 1h",
     "deploykit keys public > me.pub      # hand it to whoever must trust your packages",
     "deploykit keys trust alice.pub", "deploykit keys trusted"],
    ["%deploy keys create churn --scope predict,explain --expires 30d", "%deploy keys list churn",
     "%deploy keys revoke churn 3f9a1c2b7d4e", "%deploy keys trust alice.pub"],
)
AUDIT_EXAMPLES = (
    ["deploykit audit verify churn", "deploykit audit show churn --tail 50"],
    ["%deploy audit verify churn", "%deploy audit show churn"],
)


def keys_arguments(p: argparse.ArgumentParser) -> None:
    verbs = p.add_subparsers(dest="verb", required=True, parser_class=type(p), metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        sub.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        return sub

    create = verb("create", "make an API key for deployment NAME; prints dk_<id>_<secret> once")
    create.add_argument("name", help="deployment name")
    create.add_argument("--scope", default="predict", help="comma-separated: predict, explain, card, metrics, admin (default: predict)")
    create.add_argument("--expires", metavar="DURATION", help="lifetime, e.g. 30d, 12h (default: never)")
    create.add_argument("--rate", type=float, metavar="N", help="requests per second (default: 100; 0: no limit)")
    create.add_argument("--burst", type=int, metavar="N", help="requests allowed at once (default: twice the rate)")
    create.add_argument("--explain-rows", type=int, metavar="N", help="rows per hour sent to /explain (default: 10000; 0: no quota)")
    verb("list", "list the API keys of deployment NAME (never their secrets)").add_argument("name", help="deployment name")
    for name, help in (("revoke", "revoke an API key now"), ("rotate", "give an API key a new secret; the old one works for --overlap")):
        sub = verb(name, help)
        sub.add_argument("name", help="deployment name")
        sub.add_argument("key_id", metavar="KEY_ID", help="the key's id, as `keys list` shows it")
        if name == "rotate":
            sub.add_argument("--overlap", default="1h", metavar="DURATION", help="how long the old secret keeps working (default: 1h)")
    trust = verb("trust", "trust packages signed by the Ed25519 public key in FILE")
    trust.add_argument("public_key_file", metavar="FILE", help="a PEM public key (its owner prints it with `keys public`)")
    trust.add_argument("--label", help="who the key belongs to (default: the file's name)")
    verb("untrust", "stop trusting a key added with `keys trust`").add_argument("key_id", metavar="KEY_ID")
    verb("trusted", "list the public keys whose package signatures this machine accepts")
    verb("public", "print this machine's package signing public key (PEM)")


def audit_arguments(p: argparse.ArgumentParser) -> None:
    verbs = p.add_subparsers(dest="verb", required=True, parser_class=type(p), metavar="VERB")
    verify = verbs.add_parser("verify", help="check the hash chain and signed checkpoints; exit 1 at the first broken record")
    show = verbs.add_parser("show", help="print the last records")
    for sub in (verify, show):
        sub.add_argument("name", help="deployment name")
        sub.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    verify.add_argument("--key", action="append", default=[], metavar="FILE",
                        help="another trusted audit public key (repeatable); this machine's audit key is always trusted")
    show.add_argument("--tail", type=int, default=20, metavar="N", help="how many records (default: 20)")


def run_keys(args: argparse.Namespace, names: Any) -> Any:
    from . import keys

    if args.verb == "create":
        return keys.create(args.name, args.scope, expires=args.expires, rate=args.rate, burst=args.burst,
                           explain_rows=args.explain_rows)
    if args.verb == "list":
        return keys.list(args.name)
    if args.verb == "revoke":
        keys.revoke(args.name, args.key_id)
        return f"revoked API key {args.key_id} of {args.name}"
    if args.verb == "rotate":
        return keys.rotate(args.name, args.key_id, overlap=args.overlap)
    if args.verb == "trust":
        return f"trusting key {keys.trust(args.public_key_file, name=args.label)}"
    if args.verb == "untrust":
        keys.untrust(args.key_id)
        return f"no longer trusting key {args.key_id}"
    if args.verb == "trusted":
        return keys.trusted()
    return keys.public_key()


class AuditReport:
    """``audit verify``'s result: ``ok``, the verdict, and its one-paragraph description as its repr."""

    def __init__(self, name: str, verdict) -> None:
        from .audit import describe

        self.name, self.verdict, self.ok = name, verdict, verdict.ok
        self.text = describe(name, verdict)

    def __repr__(self) -> str:
        return self.text


def run_audit(args: argparse.Namespace, names: Any) -> Any:
    from . import audit

    if args.verb == "verify":
        return AuditReport(args.name, audit.verify(args.name, args.key))
    return audit.frame(args.name).tail(args.tail)


def show_keys(args: argparse.Namespace, result: Any) -> None:
    if args.verb in ("create", "rotate"):
        print(result.token)
        print(f"API key {result.id} for {result.name} ({', '.join(result.scopes)}); shown once: store it now",
              file=sys.stderr)
    elif hasattr(result, "to_string"):
        print(result.to_string(index=False) if len(result) else "(none)")
    else:
        print(str(result).rstrip("\n"))


def show_audit(args: argparse.Namespace, result: Any) -> int:
    if args.verb == "verify":
        print(result.text, file=sys.stdout if result.ok else sys.stderr)
        return 0 if result.ok else 1
    for row in result.itertuples(index=False):
        print(f"{row.seq:>6}  {row.time:%Y-%m-%d %H:%M:%S}  {row.kind:<10} " + _audit_columns(row))
    return 0


def _audit_columns(row) -> str:
    """What, who (or which key) and details of one record, by kind."""
    if row.kind == "action":
        return f"{row.action:<28} {row.who:<24} {json.dumps(row.what)}"
    if row.kind == "request":
        return f"{row.method} {row.path} {int(row.status):<18} {row.key_id or '-':<24} {row.request_id}"
    return f"covers records 0-{int(row.covers)}"
