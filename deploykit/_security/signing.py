"""Ed25519 signing keys, the trusted-keys list, and signing and verifying packages.

* The user's key is made on first use at ``$DEPLOYKIT_HOME/keys/signing.key`` (mode 0600, in a 0700
  folder that holds no package and no log). An organisation key replaces it when given by path, as
  ``key=`` or ``$DEPLOYKIT_SIGNING_KEY`` (a PEM PKCS#8 Ed25519 private key).
* Trusted keys: the user's own key, the configured organisation key, the keys in
  ``$DEPLOYKIT_HOME/keys/trusted.json`` (``deploykit keys trust FILE``) and those in
  ``$DEPLOYKIT_TRUSTED_KEYS``. A signature by any other key is refused.
* A signature is ``{"algorithm": "ed25519", "key_id", "public_key", "value"}`` (base64 fields).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from .. import _paths
from .._runtime import signature as _sig
from ..exceptions import ConfigError, IntegrityError

KEY_ENV = "DEPLOYKIT_SIGNING_KEY"
SIGNING_KEY = "signing.key"
TRUSTED_FILE = "trusted.json"


def keys_dir() -> Path:
    """``$DEPLOYKIT_HOME/keys``: private keys and the trust list, readable by the owner only."""
    path = _paths.home() / "keys"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def load_or_create_key(path: Path):
    """The Ed25519 private key at ``path``, made (0600, atomically, race-free) if there is none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(scratch, path)  # fails if another process made it meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            scratch.unlink()
    return _load_private(path)


def _load_private(path: str | Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"signing key {path} does not exist; give the path of a PEM Ed25519 private key") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key ({exc}); deploykit signs with Ed25519") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, but deploykit signs with Ed25519 keys")
    return key


def signing_key(key: Any = None):
    """The key that signs: ``key`` (a path or a private key), else ``$DEPLOYKIT_SIGNING_KEY``, else the user's."""
    if key is not None and not isinstance(key, (str, os.PathLike)):
        return key
    path = key or os.environ.get(KEY_ENV)
    return _load_private(path) if path else load_or_create_key(keys_dir() / SIGNING_KEY)


def _raw_public(private) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key(key: Any = None) -> str:
    """The signing key's public half as PEM, to hand to whoever must trust your packages."""
    from cryptography.hazmat.primitives import serialization

    return signing_key(key).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# -- sign and verify bytes ---------------------------------------------------------------------------------
def sign(data: bytes, key: Any = None) -> dict:
    """Sign ``data`` with Ed25519; return the signature as a JSON-ready dict.

    Parameters
    ----------
    data : bytes
    key : path or Ed25519PrivateKey, optional
        Default: ``$DEPLOYKIT_SIGNING_KEY``, else the user's key (made on first use).

    Examples
    --------
    >>> sig = sign(b"approved churn v3")                          # doctest: +SKIP
    >>> verify(b"approved churn v3", sig) == sig["key_id"]        # doctest: +SKIP
    True
    """
    private = signing_key(key)
    public = _raw_public(private)
    return {"algorithm": _sig.ALGORITHM, "key_id": _sig.key_id(public),
            "public_key": base64.b64encode(public).decode(), "value": base64.b64encode(private.sign(data)).decode()}


def verify(data: bytes, signature: dict, trusted: Any = None) -> str:
    """Check that a trusted key signed ``data``; return its key id, else raise :class:`deploykit.IntegrityError`.

    ``trusted``: public keys (base64, PEM, raw 32 bytes) or a ``{key_id: raw}`` dict; default: the
    trusted keys of this machine (:func:`trusted_keys`).
    """
    return _sig.verify_signature(data, signature, _trusted_map(trusted), "the signed data")


def _trusted_map(trusted: Any) -> dict[str, bytes]:
    if trusted is None:
        return {kid: entry["raw"] for kid, entry in trusted_keys().items()}
    if isinstance(trusted, dict):
        return dict(trusted)
    raws = [t if isinstance(t, bytes) and len(t) == 32 else _sig.raw_public_key(t) for t in trusted]
    return {_sig.key_id(raw): raw for raw in raws}


# -- the trust list ----------------------------------------------------------------------------------------
def _trusted_path() -> Path:
    return keys_dir() / TRUSTED_FILE


def _read_trusted() -> list[dict]:
    path = _trusted_path()
    return json.loads(path.read_text()) if path.exists() else []


def trusted_keys() -> dict[str, dict]:
    """Every key this machine trusts, by key id: ``{"raw", "public_key", "name", "source"}``."""
    found: dict[str, dict] = {}

    def add(raw: bytes, name: str, source: str) -> None:
        found.setdefault(_sig.key_id(raw), {"raw": raw, "public_key": base64.b64encode(raw).decode(),
                                              "name": name, "source": source})

    own = keys_dir() / SIGNING_KEY
    if os.environ.get(KEY_ENV):
        add(_raw_public(signing_key()), "organisation key", os.environ[KEY_ENV])
    if own.exists() or not os.environ.get(KEY_ENV):
        add(_raw_public(load_or_create_key(own)), "this machine's signing key", str(own))
    for entry in _read_trusted():
        add(base64.b64decode(entry["public_key"]), entry.get("name", ""), str(_trusted_path()))
    for raw in (_sig.trusted_from_env() or {}).values():
        add(raw, "from the environment", f"${_sig.TRUSTED_ENV}")
    return found


def trust(public_key_file: str | Path, *, name: str | None = None) -> str:
    """Trust packages (and approvals) signed by the key in ``public_key_file`` (PEM or base64); return its id."""
    path = Path(public_key_file)
    try:
        raw = _sig.raw_public_key(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no public key file at {path}; its owner prints it with `deploykit keys public`") from None
    entries = [e for e in _read_trusted() if e["key_id"] != _sig.key_id(raw)]
    entries.append({"key_id": _sig.key_id(raw), "public_key": base64.b64encode(raw).decode(), "name": name or path.stem,
                    "added": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    _write_trusted(entries)
    return _sig.key_id(raw)


def untrust(key_id: str) -> None:
    """Stop trusting key ``key_id`` (one added with :func:`trust`)."""
    entries = _read_trusted()
    kept = [e for e in entries if e["key_id"] != key_id]
    if len(kept) == len(entries):
        listed = ", ".join(e["key_id"] for e in entries) or "none"
        raise ConfigError(f"key {key_id!r} is not in {_trusted_path()} (added keys: {listed})")
    _write_trusted(kept)


def _write_trusted(entries: list[dict]) -> None:
    path = _trusted_path()
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(entries, indent=1) + "\n")
    os.replace(scratch, path)


def trusted_env() -> str:
    """The value of ``$DEPLOYKIT_TRUSTED_KEYS`` for a runtime this machine starts: every trusted key."""
    return ",".join(entry["public_key"] for entry in trusted_keys().values())


# -- packages ----------------------------------------------------------------------------------------------
def sign_package(root: str | Path, manifest: Any, key: Any = None) -> str:
    """Write ``root/model/signature.json`` over the files now in ``root`` and ``manifest`` (the one written
    in ``root/model``); return the signer's key id."""
    root = Path(root)
    stated = _sig.statement(root, manifest)
    signed = {"format": 1, "statement": stated, "signature": sign(_sig.canonical(stated), key)}
    (root / "model" / _sig.SIGNATURE_FILE).write_text(json.dumps(signed, indent=1) + "\n")
    return signed["signature"]["key_id"]


def verify_package(pkg, trusted: Any = None) -> str:
    """Check a :class:`~deploykit.Package`'s signature and files, in its folder and in its bento if present.

    Returns the signer's key id; raises :class:`deploykit.IntegrityError` naming the first file that
    differs from what was signed, or the untrusted key.
    """
    keys = _trusted_map(trusted)
    kid = _sig.verify_tree(pkg.path, pkg.manifest, keys)
    bento = Path(str(pkg.bento.get("path", "")))
    if bento.name and (bento / "src" / "model").is_dir():
        _sig.verify_tree(bento / "src", None, keys)
    return kid


def verify_card_file(card_file: Path) -> None:
    """Before a card is read from a package folder (``ModelCard.load``): check that package's signature."""
    model_dir = card_file.parent
    if not (model_dir / _sig.MANIFEST_FILE).is_file():
        return  # a card saved on its own (card.save): no package beside it to check against
    _sig.verify_tree(model_dir.parent, None, _trusted_map(None))
    manifest = json.loads((model_dir / _sig.MANIFEST_FILE).read_text())
    record = (manifest.get("artifacts") or {}).get("card_json") or {}
    if record.get("file") != card_file.name:
        raise IntegrityError(f"{card_file} is not the card its package signed ({record.get('file')})", path=str(card_file))
