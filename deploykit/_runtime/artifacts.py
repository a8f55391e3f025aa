"""Writing and reading model artifacts, each guarded by a sha256 recorded when it was written.

skops is preferred for scikit-learn objects (no arbitrary code runs on load); cloudpickle carries what
skops cannot represent, such as classes and functions defined in a notebook. Either way the bytes are
hashed on write and verified before anything is deserialised.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from .errors import IntegrityError
from .manifest import Artifact

SKOPS = "skops"
CLOUDPICKLE = "cloudpickle"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_verified(path: str | Path, expected_sha256: str) -> bytes:
    """Return the file's bytes, or raise :class:`IntegrityError` if they are not what was written."""
    data = Path(path).read_bytes()
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise IntegrityError(
            f"artifact {Path(path).name} has sha256 {actual[:12]}… but the package recorded "
            f"{expected_sha256[:12]}…; it was changed after packaging and will not be loaded. "
            "Re-create the package with deploykit.package(...) from the original model.",
            path=str(path),
        )
    return data


def dump_model(model: Any, directory: Path, fmt: str) -> Artifact:
    """Serialise ``model`` into ``directory`` in format ``fmt``; return its artifact record."""
    if fmt == SKOPS:
        import skops.io

        data = skops.io.dumps(model)
        trusted = sorted(skops.io.get_untrusted_types(data=data))
        filename = "model.skops"
    elif fmt == CLOUDPICKLE:
        import cloudpickle

        data = cloudpickle.dumps(model)
        trusted = []
        filename = "model.pkl"
    else:  # pragma: no cover - callers pass one of the two constants
        raise ValueError(f"unknown artifact format {fmt!r}")
    (directory / filename).write_bytes(data)
    return Artifact(file=filename, sha256=sha256_bytes(data), format=fmt, trusted_types=trusted)


def write_artifact(directory: Path, filename: str, data: bytes) -> Artifact:
    """Write ``data`` as ``directory/filename`` and return its record."""
    (directory / filename).write_bytes(data)
    return Artifact(file=filename, sha256=sha256_bytes(data))


def file_artifact(path: Path) -> Artifact:
    """The record of a file already written (a card, a plot)."""
    return Artifact(file=Path(path).name, sha256=sha256_file(path))


def load_model(directory: Path, record: Artifact) -> Any:
    """Load the model an artifact record describes, after verifying its sha256."""
    data = read_verified(directory / record.file, record.sha256)
    if record.format == SKOPS:
        import skops.io

        # The types were listed when deploykit wrote the file and the hash proves it is that file.
        return skops.io.loads(data, trusted=record.trusted_types)
    if record.format == CLOUDPICKLE:
        import cloudpickle

        return cloudpickle.load(io.BytesIO(data))
    raise IntegrityError(f"artifact {record.file} has unknown format {record.format!r}")
