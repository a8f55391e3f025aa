"""Writing and reading model artifacts, each guarded by a sha256 recorded when it was written.

skops is preferred for scikit-learn objects (no arbitrary code runs on load); cloudpickle carries what
skops cannot represent, such as classes and functions defined in a notebook. Either way the bytes are
hashed on write and verified before anything is deserialised.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
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

        data = normalise_skops(skops.io.dumps(model))
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


# The earliest date a zip entry can carry; any fixed date would do.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def normalise_skops(data: bytes) -> bytes:
    """The same skops archive, written so that the same fitted model always gives the same bytes.

    skops names objects and their array files after ``id()`` (memory addresses) and stamps each zip
    entry with the time of writing, so two dumps of one model differ. Ids and file names are renumbered
    in their order of first appearance in ``schema.json`` and every entry gets one fixed date; skops
    only uses them to match references within the file, so the archive loads the same.
    """
    source = zipfile.ZipFile(io.BytesIO(data))
    state = json.loads(source.read("schema.json"))
    ids: dict[int, int] = {}
    files: dict[str, str] = {}
    _renumber(state, ids, files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as target:
        for old, new in files.items():
            _write_entry(target, new, source.read(old))
        _write_entry(target, "schema.json", json.dumps(state, indent=2).encode())
    return buffer.getvalue()


def _renumber(node: Any, ids: dict[int, int], files: dict[str, str]) -> None:
    if isinstance(node, list):
        for item in node:
            _renumber(item, ids, files)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("__id__"), int):
        node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
    if isinstance(node.get("file"), str) and "__loader__" in node:
        name = node["file"]
        node["file"] = files.setdefault(name, f"{len(files) + 1:06d}{Path(name).suffix}")
    for value in node.values():
        _renumber(value, ids, files)


def _write_entry(archive: zipfile.ZipFile, name: str, payload: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.create_system, info.external_attr = 3, 0o644 << 16  # the same on every platform
    archive.writestr(info, payload)


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
