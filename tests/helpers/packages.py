"""Packages made broken on purpose, for release tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from deploykit._package import BUILD_RECORD, Package
from deploykit._runtime.manifest import Manifest
from deploykit._security.signing import sign_package


def broken_copy(pkg: Package, folder: Path, *, version: str = "999") -> Package:
    """A copy of ``pkg`` as version ``version`` in ``folder``, whose bento's model artifact no longer
    matches its sha256: the service refuses to load it, so the release must fail at start.

    Both the copy and its bento are signed again with this machine's key (as an insider holding it
    would), so the deploy-time signature check passes and the failure comes from the version itself."""
    shutil.copytree(pkg.path, folder)
    bento = folder.parent / f"{folder.name}-bento"
    shutil.copytree(pkg.bento_path, bento)
    (bento / "src" / "model" / pkg.manifest.model.file).write_bytes(b"not the model")
    manifest = Manifest.read(folder / "model")
    manifest.version = version
    manifest.write(folder / "model")
    (folder / BUILD_RECORD).write_text(json.dumps({"bento": {"tag": f"{pkg.name}:broken", "path": str(bento)}}))
    sign_package(folder, manifest)
    sign_package(bento / "src", Manifest.read(bento / "src" / "model"))
    return Package.load(folder)
