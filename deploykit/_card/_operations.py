"""The card's monitoring and logging facts, filled from structured data instead of free text.

The monitoring and security work hands its facts to :func:`operations` as plain dicts, e.g.::

    operations(monitoring={"metrics": "Prometheus at /metrics", "drift": "PSI per column, daily"},
               logging={"requests": "every prediction, hashed inputs", "retention": "13 months"},
               source="deploykit monitoring 1")

and the card shows them as rows under Deployment › Monitoring and Logging, beside the user's own
``monitoring`` and ``logging`` text. Until then both lists are empty and the sections read as before.
"""

from __future__ import annotations

import json


def operations(monitoring: dict | None = None, logging: dict | None = None, *, source: str | None = None) -> dict:
    """The ``deployment.operations`` section: ``{"monitoring": [...], "logging": [...], "source": ...}``.

    Each dict maps what is watched or kept (``"drift"``, ``"retention"``) to how; values may be text,
    numbers, booleans or lists and are shown as text, in the order given.
    """
    return {"monitoring": _rows(monitoring), "logging": _rows(logging), "source": source}


def _rows(facts: dict | None) -> list[dict]:
    return [{"item": str(key), "value": _text(value)} for key, value in (facts or {}).items()]


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return json.dumps(value, ensure_ascii=False)
