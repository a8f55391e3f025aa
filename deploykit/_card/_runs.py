"""Batch runs of a package, logged after packaging beside it (its card files stay as hashed): the card's
change log lists them (``batch-runs.jsonl``, one JSON object a line)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

BATCH_RUNS = "batch-runs.jsonl"
_RUN_FIELDS = ("source", "destination", "rows", "scored", "rejected_rows", "chunks", "resumed_chunks", "seconds",
               "engine", "explain")


def record_batch_run(package_path, run: dict) -> None:
    """Append a batch run to the package's log; :func:`batch_runs` feeds the card's change log."""
    entry = {"finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             **{key: run.get(key) for key in _RUN_FIELDS}}
    with open(Path(package_path) / BATCH_RUNS, "a") as log:
        log.write(json.dumps(entry) + "\n")


def batch_runs(package_path) -> list[dict]:
    log = Path(package_path) / BATCH_RUNS
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
