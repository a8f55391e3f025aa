"""The front's settings: what ``deploy()`` says about capture, API keys and the audit trail.

One JSON file in the deployment's folder (``settings.json``), written atomically. The host writes it
before it starts a front, and a running front rewrites it when the admin API changes a setting, so a
restarted front resumes with the same settings::

    {"capture": {"fraction": 1.0, "retention": null}, "auth": false, "audit": true}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE = "settings.json"
DEFAULTS = {"capture": {"fraction": 1.0, "retention": None}, "auth": False, "audit": True}


def read(state_dir) -> dict:
    try:
        stored = json.loads((Path(state_dir) / FILE).read_text())
    except (OSError, ValueError):
        stored = {}
    return {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}


def write(state_dir, **changes) -> dict:
    """Merge ``changes`` into the stored settings; return them all."""
    unknown = sorted(set(changes) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown front settings {unknown}; they are {sorted(DEFAULTS)}")
    settings = {**read(state_dir), **changes}
    path = Path(state_dir) / FILE
    scratch = path.with_name(f".{FILE}.{os.getpid()}")
    scratch.write_text(json.dumps(settings))
    os.replace(scratch, path)
    return settings
