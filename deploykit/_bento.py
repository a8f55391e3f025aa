"""Building the BentoML bento for a package.

The bento's service is :mod:`deploykit._runtime.service` (copied into the package as
``deploykit_runtime``), configured by the manifest under ``model/``; nothing is generated per model.
The build runs in a child process, this module run as ``python -I -m deploykit._bento SPEC``: BentoML
imports the service module to read it, and a notebook that packages several models must not keep
one package's service module cached for the next.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SERVICE = "deploykit_runtime.service:DeployKitService"


def build_bento(package_dir: Path, manifest, env: dict | None = None) -> dict:
    """Build the bento from ``package_dir``; return ``{"tag": ..., "path": ...}``."""
    from .exceptions import PackagingError

    spec = {
        "name": manifest.service_name,
        "version": manifest.bento_version,
        "labels": {"deploykit": "true", "model-name": manifest.name, "model-sha256": manifest.model.sha256[:16]},
        "description": f"deploykit package {manifest.name} version {manifest.version}",
        "requirements": manifest.requirements,
        "build_ctx": str(package_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-I", "-m", "deploykit._bento", json.dumps(spec)],
        capture_output=True, text=True, cwd=package_dir, env=env,
    )
    if proc.returncode != 0:
        raise PackagingError(f"bentoml could not build the bento for {manifest.name!r}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(spec: dict) -> dict:
    """The child's work: build the bento and say where it is."""
    import bentoml

    bento = bentoml.bentos.build(
        SERVICE,
        name=spec["name"],
        version=spec["version"],
        labels=spec["labels"],
        description=spec["description"],
        include=["deploykit_runtime/*.py", "model/*"],
        python={"packages": spec["requirements"], "lock_packages": False},
        build_ctx=spec["build_ctx"],
    )
    return {"tag": str(bento.tag), "path": bento.path}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
