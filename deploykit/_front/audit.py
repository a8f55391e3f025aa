"""The audit trail: an append-only, hash-chained log per deployment, with signed checkpoints.

``audit.jsonl`` in the deployment's state folder holds one JSON record per line. Each record's
``hash`` is ``sha256(previous record's hash || the record's canonical JSON without "hash")`` (the
first record chains from 64 zeros), and ``hash`` is written as the line's last key, so the hashed
bytes are the line itself up to it: no re-encoding is needed to check it. Records:

* ``{"kind": "request", "seq", "time", "request_id", "version", "variant", "key_id", "method", "path",
  "status", "input_sha256", "output_sha256"}``: one per prediction request; digests, never values;
* ``{"kind": "action", "seq", "time", "action", "who", "what"}``: package, deploy, promote, rollback,
  stop, scale, key_create, key_revoke, key_rotate, profile, approve;
* ``{"kind": "checkpoint", "seq", "time", "covers", "head", "key_id", "signature"}``: an Ed25519
  signature over the hash of record ``covers`` (the one before it), written every N records or T
  seconds, with a key kept outside the log's folder. Whoever rewrites the log cannot re-sign it.

Durability: each record is one ``write()`` on an ``O_APPEND`` descriptor, under ``flock`` (so several
processes can write one chain: a writer that finds the file grown re-reads its last record first), and
:meth:`AuditLog.append` returns only once that write has returned; the caller acknowledges after it.
The bytes are then in the kernel, so a ``kill -9`` of the writer loses nothing it acknowledged;
``fsync`` ("never", "always" or "interval") decides what a power cut may lose.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field

LOG_FILE = "audit.jsonl"
GENESIS = "0" * 64
_HASH_KEY = b',"hash":"'
_CHECKPOINT_CONTEXT = b"deploykit-audit-checkpoint\n"
FSYNC_POLICIES = ("never", "always", "interval")


class AuditError(RuntimeError):
    """The audit log cannot be written (the caller must not acknowledge the request)."""


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def chain_hash(previous: str, body: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + body).hexdigest()


def encode(body: dict, previous: str) -> tuple[bytes, str]:
    """The line for ``body`` chained after ``previous``, and its hash."""
    data = canonical(body)
    digest = chain_hash(previous, data)
    return data[:-1] + _HASH_KEY + digest.encode() + b'"}\n', digest


def split(line: bytes) -> tuple[bytes, str]:
    """(the hashed bytes, the recorded hash) of one line, without its newline; ValueError if malformed."""
    cut = line.rfind(_HASH_KEY)
    if cut < 0 or not line.endswith(b'"}') or len(line) - cut != len(_HASH_KEY) + 66:
        raise ValueError("it has no hash as its last key")
    return line[:cut] + b"}", line[cut + len(_HASH_KEY):-2].decode("ascii")


def checkpoint_message(name: str, covers: int, head: str, when: float) -> bytes:
    return _CHECKPOINT_CONTEXT + canonical({"log": name, "covers": covers, "head": head, "time": when})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AuditLog:
    """The writer of one deployment's audit log.

    Parameters
    ----------
    directory : str or Path
        The deployment's state folder; the log is ``directory/audit.jsonl``.
    name : str
        The deployment's name (signed into each checkpoint).
    key_path : str or Path, optional
        The PEM Ed25519 private key that signs checkpoints; it must lie outside ``directory``. Without
        it no checkpoint is written.
    fsync : {"never", "always", "interval"}
        "always": fsync after every record; "interval": a background thread fsyncs every
        ``fsync_interval`` seconds when something was written.
    checkpoint_every, checkpoint_seconds
        A checkpoint follows this writer's records once it has written that many, or once that many
        seconds passed since its last one; :meth:`close` writes a last one.
    """

    def __init__(self, directory, *, name: str = "", key_path=None, fsync: str = "interval",
                 fsync_interval: float = 1.0, checkpoint_every: int = 1000, checkpoint_seconds: float = 60.0) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync={fsync!r}; choose one of {', '.join(FSYNC_POLICIES)}")
        self.directory = os.path.realpath(os.fspath(directory))
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, LOG_FILE)
        self.name, self.fsync = name, fsync
        self.checkpoint_every, self.checkpoint_seconds = checkpoint_every, checkpoint_seconds
        self._key, self.key_id = _load_key(key_path, self.directory) if key_path else (None, None)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._reader = os.open(self.path, os.O_RDONLY)
        self._lock = threading.Lock()
        self._size = -1  # the file's size after this writer's last write; another size means another writer
        self._previous, self._seq = GENESIS, 0
        self._since, self._last_checkpoint = 0, time.monotonic()
        self._dirty = threading.Event()
        self._closed = threading.Event()
        if fsync == "interval":
            threading.Thread(target=self._fsync_loop, args=(fsync_interval,), daemon=True,
                             name="deploykit-audit-fsync").start()

    # -- records -----------------------------------------------------------------------------------------
    def request(self, *, request_id: str, version: str, key_id: str | None, method: str, path: str, status: int,
                input: bytes, output: bytes, variant: str = "live", when: float | None = None) -> dict:
        """Record one prediction request: its id, version, key and the sha256 of its bodies."""
        return self.append({"kind": "request", "time": when if when is not None else time.time(),
                            "request_id": request_id, "version": version, "variant": variant, "key_id": key_id,
                            "method": method, "path": path, "status": status,
                            "input_sha256": sha256_hex(input), "output_sha256": sha256_hex(output)})

    def action(self, action: str, *, who: str, what: dict) -> dict:
        """Record a deploy action (package, deploy, promote, rollback, stop, key_create, ...)."""
        return self.append({"kind": "action", "time": time.time(), "action": action, "who": who, "what": what})

    def append(self, record: dict) -> dict:
        """Write ``record`` (without ``seq``/``hash``, which are added) as the chain's next line.

        Returns once the write has returned: acknowledge only after this. Raises :class:`AuditError`.
        """
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._follow_tail()
                written = self._write(record)
                if self._key is not None and self._checkpoint_due():
                    self._write_checkpoint()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return written

    def checkpoint(self) -> dict | None:
        """Sign the chain's head now, if this writer wrote anything since its last checkpoint."""
        if self._key is None or not self._since:
            return None
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._follow_tail()
                return self._write_checkpoint()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self.checkpoint()
        self._closed.set()
        if self.fsync != "never":
            os.fsync(self._fd)
        os.close(self._fd)
        os.close(self._reader)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the chain ---------------------------------------------------------------------------------------
    def _write(self, record: dict) -> dict:
        body = {**record, "seq": self._seq}
        line, digest = encode(body, self._previous)
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise AuditError(f"could not append to {self.path}: {exc}") from exc
        if written != len(line):  # a short write (disk full): the torn tail is cut by the next writer
            raise AuditError(f"only {written} of {len(line)} bytes reached {self.path} (disk full?)")
        if self.fsync == "always":
            os.fsync(self._fd)
        else:
            self._dirty.set()
        self._size += len(line)
        self._previous, self._seq = digest, self._seq + 1
        self._since += 1
        return {**body, "hash": digest}

    def _checkpoint_due(self) -> bool:
        return self._since >= self.checkpoint_every or (
            self._since > 0 and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds)

    def _write_checkpoint(self) -> dict:
        when = time.time()
        covers = self._seq - 1
        signature = self._key.sign(checkpoint_message(self.name, covers, self._previous, when))
        written = self._write({"kind": "checkpoint", "time": when, "covers": covers, "head": self._previous,
                               "key_id": self.key_id, "signature": base64.b64encode(signature).decode()})
        self._since, self._last_checkpoint = 0, time.monotonic()
        return written

    def _follow_tail(self) -> None:
        """Under the lock: if another writer appended since our last write, continue from its last record."""
        size = os.fstat(self._fd).st_size
        if size == self._size:
            return
        tail, start = _read_tail(self._reader, size)
        if tail and not tail.endswith(b"\n"):  # a write cut short (never acknowledged): drop it
            size = start + tail.rfind(b"\n") + 1
            os.ftruncate(self._fd, size)
            tail, start = _read_tail(self._reader, size)
        if tail:
            last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
            try:
                body, digest = split(last)
                seq = json.loads(body)["seq"]
            except (ValueError, KeyError) as exc:
                raise AuditError(f"the last record of {self.path} is unreadable ({exc}); run `deploykit audit "
                                 "verify` to see where the log was damaged") from None
            self._previous, self._seq = digest, seq + 1
        else:
            self._previous, self._seq = GENESIS, 0
        self._size = size

    def _fsync_loop(self, interval: float) -> None:
        while not self._closed.wait(interval):
            if self._dirty.is_set():
                self._dirty.clear()
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass  # closed meanwhile


def _read_tail(fd: int, size: int) -> tuple[bytes, int]:
    """The end of the file from just after the second-to-last newline (enough for the last record)."""
    chunk = 4096
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        if start == 0 or data.rstrip(b"\n").rfind(b"\n") >= 0:
            return data, start
        chunk *= 4


def _load_key(path, directory: str):
    from cryptography.hazmat.primitives import serialization

    real = os.path.realpath(os.fspath(path))
    if os.path.commonpath([real, directory]) == directory:
        raise ValueError(f"the checkpoint key {real} must not be inside the log's folder {directory}: whoever can "
                         "rewrite the log could then sign it too")
    with open(real, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, key_id(public)


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


# -- verifying (host side; one definition of the format) ------------------------------------------------------
@dataclass
class Verdict:
    """What :func:`verify_file` found: ``ok``, or the first broken record and why."""

    ok: bool
    records: int = 0
    checkpoints: int = 0
    last_checkpoint: int | None = None
    broken: int | None = None
    reason: str = ""
    torn_tail: bool = False
    notes: list = field(default_factory=list)

    @property
    def uncovered(self) -> int:
        """Records after the last checkpoint: not yet protected against a rewrite by the signature."""
        return self.records - (self.last_checkpoint + 2 if self.last_checkpoint is not None else 0)


def verify_file(path, name: str, trusted: dict[str, bytes]) -> Verdict:
    """Walk the chain of ``path``; ``trusted`` maps checkpoint key ids to raw Ed25519 public keys."""
    verdict = Verdict(ok=True)
    previous = GENESIS
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        verdict.notes.append(f"{path} does not exist yet: nothing was recorded")
        return verdict
    with handle:
        for index, line in enumerate(handle):
            if not line.endswith(b"\n"):
                verdict.torn_tail = True
                verdict.notes.append(f"the last line ({len(line)} bytes) is incomplete: a write cut short, never "
                                     "acknowledged; the next writer removes it")
                break
            reason, record = _check_line(line[:-1], index, previous, name, trusted)
            if reason:
                verdict.ok, verdict.broken, verdict.reason = False, index, reason
                return verdict
            previous = record["hash"]
            verdict.records += 1
            if record.get("kind") == "checkpoint":
                verdict.checkpoints += 1
                verdict.last_checkpoint = record["covers"]
    return verdict


def _check_line(line: bytes, index: int, previous: str, name: str, trusted: dict) -> tuple[str, dict]:
    try:
        body, digest = split(line)
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"it is not a well-formed record ({exc})", {}
    if record.get("seq") != index:
        return (f"its sequence number is {record.get('seq')!r} where {index} was expected: records were removed, "
                "inserted or reordered"), record
    if chain_hash(previous, body) != digest:
        return ("its hash does not match its content chained to the previous record's hash: this record "
                "(or the previous record's hash) was changed"), record
    if record.get("kind") == "checkpoint":
        return _check_checkpoint(record, index, previous, name, trusted), record
    return "", record


def _check_checkpoint(record: dict, index: int, previous: str, name: str, trusted: dict) -> str:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if record.get("covers") != index - 1 or record.get("head") != previous:
        return "this checkpoint does not sign the record just before it: a record before it was changed"
    public = trusted.get(record.get("key_id"))
    if public is None:
        known = ", ".join(sorted(trusted)) or "none"
        return f"this checkpoint is signed by key {record.get('key_id')}, which is not a trusted audit key ({known})"
    try:
        signature = base64.b64decode(record.get("signature", ""), validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(
            signature, checkpoint_message(name, record["covers"], record["head"], record["time"]))
    except (InvalidSignature, ValueError, KeyError):
        return f"this checkpoint's signature does not verify with key {record.get('key_id')}: it was forged or altered"
    return ""
