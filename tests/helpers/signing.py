"""Re-signing a package tree on purpose: a release a trusted key signed, but that is broken in another way.

Tests of the health gate (a version that cannot start) tamper with a copy's files; since deploy refuses
files that differ from what was signed, those copies are signed again with this machine's key, as an
insider who holds it would.
"""

from __future__ import annotations

import json
from pathlib import Path


def resign(root: str | Path) -> str:
    """Sign the files now in ``root`` (a package folder, or a bento's ``src``) with this machine's key."""
    from deploykit._security.signing import sign_package

    root = Path(root)
    return sign_package(root, json.loads((root / "model" / "deploykit.json").read_text()))
