"""The package signature: one Ed25519 signature over every file's sha256, checked wherever a package is used.

A package folder, its bento's ``src/`` and the image's ``/home/deploykit/bento/src`` share one layout
(``model/`` and ``deploykit_runtime/``), so one check serves all three. ``model/signature.json`` holds

* ``statement``: the package's name and version, the sha256 of its manifest (``model/deploykit.json``,
  without the ``bento`` key, which is added after the bento is built) and the sha256 of every other
  file under ``model/`` and of the runtime's ``.py`` files;
* ``signature``: ``{"algorithm": "ed25519", "key_id", "public_key", "value"}`` over the statement's
  canonical JSON.

The sha256 sums recorded in the manifest catch accidents; the signature catches intent, since whoever
rewrites a file and its hashes cannot sign the new statement with a key the verifier trusts. This
module only verifies (the served runtime imports it); signing keys live on the notebook side
(:mod:`deploykit._security.signing`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from .errors import IntegrityError

SIGNATURE_FILE = "signature.json"
MANIFEST_FILE = "deploykit.json"
ALGORITHM = "ed25519"
STATEMENT_KIND = "deploykit-package"
# DEPLOYKIT_TRUSTED_KEYS: the public keys (base64 of the raw 32 bytes, comma-separated) a served runtime
# accepts; deploykit sets it for every version it starts, and bakes the builder's list into images.
TRUSTED_ENV = "DEPLOYKIT_TRUSTED_KEYS"
UNSIGNED_NOTE = "package the model again with deploykit.package(...) so it is signed"


def canonical(value) -> bytes:
    """The one JSON encoding that is hashed and signed: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def key_id(public_key: bytes) -> str:
    """A key's short name: the first 16 hex digits of the sha256 of its raw 32 bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def raw_public_key(text: str | bytes) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as base64 (raw or DER) or as a PEM block."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    if b"-----BEGIN" in data:
        from cryptography.hazmat.primitives import serialization

        loaded = serialization.load_pem_public_key(data)
        return loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) == 44:  # DER SubjectPublicKeyInfo: a 12-byte prefix, then the key
        raw = raw[12:]
    if len(raw) != 32:
        raise IntegrityError(f"{data[:60]!r} is not an Ed25519 public key (base64 of 32 bytes, or a PEM block)")
    return raw


def trusted_from_env() -> dict[str, bytes] | None:
    """The keys ``$DEPLOYKIT_TRUSTED_KEYS`` names, by key id; None when it is not set."""
    value = os.environ.get(TRUSTED_ENV)
    if value is None:
        return None
    keys = [raw_public_key(part) for part in value.split(",") if part.strip()]
    return {key_id(raw): raw for raw in keys}


def verify_signature(data: bytes, signature: dict, trusted: dict[str, bytes] | None, what: str) -> str:
    """Check ``signature`` over ``data`` with the trusted key it names; return that key's id.

    ``trusted=None`` checks the signature with the public key it carries (the files are what was signed,
    but by anyone): for a runtime started without a trust list.
    """
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        raise IntegrityError(f"{what} has no Ed25519 signature (got {str(signature)[:80]!r})")
    claimed = str(signature.get("key_id"))
    if trusted is None:
        public = raw_public_key(str(signature.get("public_key", "")))
        if key_id(public) != claimed:
            raise IntegrityError(f"{what}: its signature names key {claimed} but carries another public key")
    elif claimed not in trusted:
        known = ", ".join(sorted(trusted)) or "none"
        raise IntegrityError(
            f"{what} is signed by key {claimed}, which is not a trusted key (trusted: {known}). If you trust whoever "
            "holds it, add their public key: `deploykit keys trust THEIR_KEY.pub`")
    else:
        public = trusted[claimed]
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(value, data)
    except (InvalidSignature, binascii.Error, ValueError):
        raise IntegrityError(
            f"{what}: the signature by key {claimed} does not match the signed content; it was changed after signing"
        ) from None
    return claimed


# -- the package statement ---------------------------------------------------------------------------------
def manifest_sha256(manifest) -> str:
    """The sha256 that binds a manifest: the canonical JSON of what its file holds (a typed manifest is read
    as its JSON; a format-1 dict without ``bento``, which that format added after the bento build)."""
    data = json.loads(manifest.to_json()) if hasattr(manifest, "to_json") else manifest
    return hashlib.sha256(canonical({k: v for k, v in data.items() if k != "bento"})).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_files(root: Path) -> dict[str, str]:
    """sha256 of every file the signature covers, by path relative to ``root``."""
    files = {}
    for path in sorted((root / "model").iterdir()):
        if path.is_file() and path.name not in (MANIFEST_FILE, SIGNATURE_FILE):
            files[f"model/{path.name}"] = _sha256_file(path)
    runtime = root / "deploykit_runtime"
    for path in sorted(runtime.glob("*.py")) if runtime.is_dir() else []:
        files[f"deploykit_runtime/{path.name}"] = _sha256_file(path)
    return files


def statement(root: Path, manifest) -> dict:
    """What a package signature covers, computed from the files now in ``root``."""
    return {"kind": STATEMENT_KIND, "name": manifest["name"], "version": str(manifest["version"]),
            "manifest_sha256": manifest_sha256(manifest), "files": package_files(Path(root))}


def verify_tree(root: str | Path, manifest=None, trusted: dict[str, bytes] | None = None) -> str:
    """Check the signature in ``root/model`` and every file it covers; return the signer's key id.

    ``manifest`` is the manifest about to be used (default: ``root/model/deploykit.json``). Raises
    :class:`IntegrityError` naming the first file that is missing or differs from what was signed.
    """
    root = Path(root)
    where = f"package at {root}"
    signed = _read_signature(root, where)
    kid = verify_signature(canonical(signed["statement"]), signed["signature"], trusted, f"the {where}")
    recorded = signed["statement"]
    for relative, expected in sorted(recorded.get("files", {}).items()):
        _check_file(root, relative, expected, kid)
    if manifest is None:
        manifest = json.loads((root / "model" / MANIFEST_FILE).read_text())
    if manifest_sha256(manifest) != recorded.get("manifest_sha256"):
        raise IntegrityError(
            f"model/{MANIFEST_FILE} in the {where} differs from the manifest key {kid} signed (version, schema, "
            f"artifact hashes or another field was edited after packaging); {UNSIGNED_NOTE}",
            path=str(root / "model" / MANIFEST_FILE))
    return kid


def _read_signature(root: Path, where: str) -> dict:
    path = root / "model" / SIGNATURE_FILE
    try:
        signed = json.loads(path.read_text())
    except FileNotFoundError:
        raise IntegrityError(f"the {where} is not signed (no model/{SIGNATURE_FILE}): it was made before deploykit "
                             f"signed packages, or the file was removed; {UNSIGNED_NOTE}", path=str(path)) from None
    except ValueError:
        raise IntegrityError(f"model/{SIGNATURE_FILE} in the {where} is not valid JSON", path=str(path)) from None
    if not isinstance(signed, dict) or not isinstance(signed.get("statement"), dict):
        raise IntegrityError(f"model/{SIGNATURE_FILE} in the {where} holds no signed statement", path=str(path))
    return signed


def _check_file(root: Path, relative: str, expected: str, kid: str) -> None:
    path = root / relative
    if ".." in Path(relative).parts:
        raise IntegrityError(f"the signed statement of {root} names {relative!r}, outside the package", path=str(path))
    try:
        actual = _sha256_file(path)
    except FileNotFoundError:
        raise IntegrityError(f"{relative} is missing from {root}, but the package was signed with it",
                             path=str(path)) from None
    if actual != expected:
        raise IntegrityError(
            f"{relative} in {root} has sha256 {actual[:12]}… but key {kid} signed {expected[:12]}…: it was changed "
            f"after packaging and will not be used; {UNSIGNED_NOTE}", path=str(path))
