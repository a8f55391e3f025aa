"""Building the BentoML bento for a package.

The bento's service is :mod:`deploykit._runtime.service` (copied into the package as
``deploykit_runtime``), configured by the manifest under ``model/``; nothing is generated per model.
The build runs in a child process: BentoML imports the service module to read it, and a notebook that
packages several models must not keep one package's service module cached for the next.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .exceptions import PackagingError

SERVICE = "deploykit_runtime.service:DeployKitService"

_CHILD = r"""
import json, sys
import bentoml
spec = json.loads(sys.argv[1])
bento = bentoml.bentos.build(
    SERVICE_PLACEHOLDER,
    name=spec["name"],
    version=spec["version"],
    labels=spec["labels"],
    description=spec["description"],
    include=["deploykit_runtime/*.py", "model/*"],
    python={"packages": spec["requirements"], "lock_packages": False},
    build_ctx=spec["build_ctx"],
)
print(json.dumps({"tag": str(bento.tag), "path": bento.path}))
"""


def build_bento(package_dir: Path, manifest: dict, env: dict | None = None) -> dict:
    """Build the bento from ``package_dir``; return ``{"tag": ..., "path": ...}``."""
    spec = {
        "name": manifest["service_name"],
        "version": manifest["bento_version"],
        "labels": {"deploykit": "true", "model-name": manifest["name"], "model-sha256": manifest["artifacts"]["model"]["sha256"][:16]},
        "description": f"deploykit package {manifest['name']} version {manifest['version']}",
        "requirements": manifest["requirements"],
        "build_ctx": str(package_dir),
    }
    child = _CHILD.replace("SERVICE_PLACEHOLDER", repr(SERVICE))
    proc = subprocess.run(
        [sys.executable, "-c", child, json.dumps(spec)], capture_output=True, text=True, cwd=package_dir, env=env
    )
    if proc.returncode != 0:
        raise PackagingError(f"bentoml could not build the bento for {manifest['name']!r}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
