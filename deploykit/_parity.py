"""The parity check: reload the package in a fresh, isolated Python process and replay sample rows.

The child runs ``python -I -m deploykit._runtime.replay`` (no user site, no current directory, no
PYTHONPATH), which loads the package with the runtime copy inside it, so it sees exactly what a server
will see. It also reports the modules it had to import, which become the package's pinned requirement
set.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .exceptions import PackagingError, ParityError

PROBABILITY_TOLERANCE = 1e-9


@dataclass
class ParityResult:
    """What the clean process predicted, compared with the notebook's model on the same rows."""

    rows: int
    label_mismatches: list[dict] = field(default_factory=list)
    max_probability_diff: float = 0.0
    max_value_diff: float = 0.0
    skipped_rows: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.label_mismatches
            and self.max_probability_diff <= PROBABILITY_TOLERANCE
            and self.max_value_diff <= PROBABILITY_TOLERANCE
        )

    def summary(self) -> str:
        if self.ok:
            text = f"{self.rows} rows replayed in a clean process: identical predictions"
            if self.max_probability_diff:
                text += f", probabilities within {self.max_probability_diff:.1e}"
        else:
            text = (
                f"{len(self.label_mismatches)} of {self.rows} predictions differ in a clean process"
                f" (max probability difference {self.max_probability_diff:.2e}, max value difference "
                f"{self.max_value_diff:.2e})"
            )
        if self.skipped_rows:
            text += f"; {self.skipped_rows} rows skipped as invalid input"
        return text

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "label_mismatches": self.label_mismatches[:10],
            "max_probability_diff": self.max_probability_diff,
            "max_value_diff": self.max_value_diff,
            "skipped_rows": self.skipped_rows,
            "tolerance": PROBABILITY_TOLERANCE,
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
        }


def run_child(package_dir: Path, manifest, rows: list[dict], explain_rows: int = 0) -> dict:
    """Run :mod:`deploykit._runtime.replay` in a fresh interpreter on the package about to be written
    with ``manifest``; return what it reported, or raise PackagingError."""
    with tempfile.TemporaryDirectory(prefix="deploykit-parity-") as tmp:
        rows_path, out_path, manifest_path = Path(tmp, "rows.json"), Path(tmp, "out.json"), Path(tmp, "manifest.json")
        rows_path.write_text(json.dumps(rows))
        manifest_path.write_text(manifest.to_json())
        proc = subprocess.run(
            [sys.executable, "-I", "-m", "deploykit._runtime.replay", str(package_dir), str(manifest_path),
             str(rows_path), str(out_path), str(explain_rows)],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if proc.returncode != 0:
            last = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
            raise PackagingError(
                f"the packaged model could not be loaded and run in a clean Python process: {last[0]}. "
                "Anything the model needs must be importable there: define custom classes in the notebook "
                "or in an installed package, not in a file only this kernel can see.\n" + proc.stderr[-3000:]
            )
        return json.loads(out_path.read_text())


def compare(expected_labels, expected_proba, child: dict, task: str) -> ParityResult:
    got = child["predictions"]
    result = ParityResult(rows=len(got), load_seconds=child.get("load_seconds", 0.0), seconds=child.get("seconds", 0.0))
    expected = np.asarray(expected_labels).tolist()
    if task == "regression":
        diff = np.abs(np.asarray(expected, dtype="float64") - np.asarray(got, dtype="float64"))
        result.max_value_diff = float(np.nanmax(diff)) if len(diff) else 0.0
        bad = np.flatnonzero(diff > PROBABILITY_TOLERANCE)
        result.label_mismatches = [{"row": int(i), "notebook": expected[i], "package": got[i]} for i in bad[:10]]
        return result
    result.label_mismatches = [
        {"row": i, "notebook": e, "package": g} for i, (e, g) in enumerate(zip(expected, got)) if e != g
    ]
    if expected_proba is not None and "probabilities" in child:
        diff = np.abs(np.asarray(expected_proba, dtype="float64") - np.asarray(child["probabilities"], dtype="float64"))
        result.max_probability_diff = float(diff.max()) if diff.size else 0.0
    return result


def raise_on_mismatch(result: ParityResult) -> None:
    if result.ok:
        return
    first = result.label_mismatches[0] if result.label_mismatches else None
    example = f" e.g. row {first['row']}: notebook {first['notebook']!r}, package {first['package']!r}." if first else ""
    raise ParityError(
        f"parity check failed: {result.summary()}.{example} The model does not behave the same once "
        "saved and reloaded; look for randomness at predict time, state kept outside the model, or "
        "custom code that reads notebook variables.",
        parity=result,
    )


def check_fast_path(expected_labels, expected_proba, child: dict, config: dict | None, task: str) -> None:
    """The fast path, as the clean process ran it, must agree with the notebook within its tolerance."""
    if not config or not config.get("enabled"):
        return
    if "fast" not in child:
        raise ParityError("the package enables its fast path but the clean process could not load it")
    got, expected = child["fast"]["predictions"], np.asarray(expected_labels).tolist()
    tolerance = config["tolerance"]
    if task == "regression":
        diff = np.abs(np.asarray(got, dtype="float64") - np.asarray(expected, dtype="float64"))
        bad = bool((diff / np.maximum(1.0, np.abs(np.asarray(expected, dtype="float64"))) > tolerance).any())
    else:
        from ._fastpath import probabilities_in_range

        gap = np.abs(np.asarray(child["fast"]["probabilities"]) - np.asarray(expected_proba)).max()
        bad = got != expected or gap > tolerance or not probabilities_in_range(child["fast"]["probabilities"])
    if bad:
        raise ParityError(
            "parity check failed on the compiled fast path in a clean process, although it passed in the "
            "notebook; package again with fast_path=False and report this"
        )
