"""What changed since the previous version of the same name.

Metrics (and whether both versions were evaluated on the same rows), the input schema, the model and
its hyperparameters, libraries, every text field of the card (intended use, owners, validator, ...),
the fairness figures, and the review the previous version received.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import _store
from .._runtime.manifest import Manifest
from ._modelcard import ModelCard, read_card

_COLUMN_FACTS = ("kind", "dtype", "nullable", "min", "max")


@dataclass
class Previous:
    """The previous version of a package, as the card needs it (read from the store, not through Package:
    packages are made by the layer above the card)."""

    version: str
    path: Path
    manifest: Manifest
    card: ModelCard | None

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def previous_version(name: str, version: str) -> str | None:
    before = _store.previous(name, version)
    return None if before is None else str(before)


def previous_package(manifest) -> Previous | None:
    """The previous version of the package, or None for a first version."""
    before = previous_version(manifest["name"], manifest["version"])
    if before is None:
        return None
    path = _store.path(manifest["name"], before)
    old = Manifest.read(path / "model")
    return Previous(version=str(before), path=path, manifest=old, card=read_card(path / "model", old))


def changelog(envelope: dict, manifest: dict, old=None) -> dict:
    name, version = manifest["name"], manifest["version"]
    if old is None:
        return {"available": False, "reason": f"v{version} is the first version of {name!r}"}
    before = old.version
    old_card = old.card
    old_envelope = old_card.to_dict() if old_card else None
    old_metrics = _metrics_of(old_envelope, old.manifest)
    new_metrics = _metrics_of(envelope, manifest)
    same_rows = _same_rows(old_envelope, envelope)
    return {
        "available": True,
        "previous_version": before,
        "previous_created": old.manifest.get("created"),
        "same_rows": same_rows,
        "rows_note": None if same_rows else (
            "the two versions were evaluated on different rows: their metrics are not directly comparable; the "
            "evaluation section compares both models on this version's rows"),
        "fields": field_changes(old_envelope, envelope),
        "fairness": fairness_changes(old_envelope, envelope),
        "previous_review": _review_of(old, old_card),
        "metrics": [
            {"name": m, "before": old_metrics.get(m), "after": new_metrics.get(m),
             "change": (new_metrics[m] - old_metrics[m]) if old_metrics.get(m) is not None and new_metrics.get(m) is not None else None}
            for m in sorted(set(old_metrics) | set(new_metrics))
        ],
        "schema": schema_diff(old.manifest["schema"], manifest["schema"]),
        "model": _model_diff(old_card.to_dict() if old_card else None, old.manifest, envelope, manifest),
        "libraries": _library_diff(old.manifest.get("requirements", []), manifest.get("requirements", [])),
    }


def _same_rows(old: dict | None, new: dict) -> bool:
    before, after = (old or {}).get("data", {}).get("evaluation"), new["data"]["evaluation"]
    return bool(before and after) and before["sha256"] == after["sha256"]


def field_changes(old: dict | None, new: dict) -> list[dict]:
    """Every text field of the card (intended use, owners, validator, ...) whose value changed."""
    from ._fields import USER_FIELDS
    from ._profiles import _get

    if old is None:
        return []
    changed = []
    for key, (_, path, _) in USER_FIELDS.items():
        before, after = _get(old, path), _get(new, path)
        if (before or None) != (after or None):
            changed.append({"field": key, "before": before, "after": after})
    return changed


def fairness_changes(old: dict | None, new: dict) -> list[dict]:
    """Each fairness gap (and adverse impact ratio) that exists in either version, before and after."""
    before, after = _gaps(old), _gaps(new)
    rows = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if (b or {}).get("value") != (a or {}).get("value"):
            rows.append({"features": key[0], "name": key[1], "before": b, "after": a})
    return rows


def _gaps(card: dict | None) -> dict:
    fairness = (card or {}).get("fairness") or {}
    if not fairness.get("available"):
        return {}
    found = {}
    for analysis in fairness["by_feature"] + ([fairness["intersection"]] if fairness.get("intersection") else []):
        where = " × ".join(analysis["features"])
        for gap in analysis.get("gaps") or [{"name": k, "value": v, "ci_low": None, "ci_high": None}
                                            for k, v in analysis["differences"].items()]:
            if gap["name"] in ("demographic_parity_difference", "equalized_odds_difference", "accuracy", "mae"):
                found[(where, gap["name"])] = {k: gap.get(k) for k in ("value", "ci_low", "ci_high", "status")}
        impact = analysis.get("adverse_impact")
        if impact:
            found[(where, "adverse_impact_ratio")] = {"value": impact["ratio"], "ci_low": impact.get("ci_low"),
                                                      "ci_high": impact.get("ci_high"), "status": impact.get("status")}
    return found


def _review_of(old, old_card) -> dict:
    from . import _approvals

    if old_card is None:
        return {"status": "no card", "decisions": []}
    author = (old_card.to_dict().get("review") or {}).get("author")
    standing = _approvals.standing(_approvals.read(old.path), old_card.sha256, author)
    return {"status": standing["status"], "validated_by": (old_card.to_dict().get("review") or {}).get("validated_by"),
            "decisions": [{k: d.get(k) for k in ("reviewer", "role", "decision", "time")} for d in standing["decisions"]]}


def _metrics_of(envelope: dict | None, manifest: dict) -> dict[str, float]:
    if envelope and envelope["evaluation"].get("available"):
        return {m["name"]: m["value"] for m in envelope["evaluation"]["metrics"] if m["value"] is not None}
    return {k: v for k, v in (manifest.get("metrics") or {}).items() if k != "rows"}


def schema_diff(old: dict, new: dict) -> dict:
    before = {c["name"]: c for c in old["columns"]}
    after = {c["name"]: c for c in new["columns"]}
    changed = []
    for name in [n for n in after if n in before]:
        for fact in _COLUMN_FACTS:
            if before[name].get(fact) != after[name].get(fact):
                changed.append({"column": name, "fact": fact, "before": before[name].get(fact), "after": after[name].get(fact)})
        old_categories, new_categories = set(before[name].get("categories") or []), set(after[name].get("categories") or [])
        if old_categories != new_categories:
            changed.append({"column": name, "fact": "categories", "before": sorted(old_categories - new_categories, key=str),
                            "after": sorted(new_categories - old_categories, key=str)})
    return {
        "added": [n for n in after if n not in before],
        "removed": [n for n in before if n not in after],
        "changed": changed,
        "order_changed": [n for n in after if n in before] != [n for n in before if n in after],
    }


def _model_diff(old_card: dict | None, old_manifest: dict, envelope: dict, manifest: dict) -> dict:
    diff = {
        "estimator": {"before": old_manifest["estimator"], "after": manifest["estimator"]}
        if old_manifest["estimator"] != manifest["estimator"] else None,
        "sha256_changed": old_manifest["artifacts"]["model"]["sha256"] != manifest["artifacts"]["model"]["sha256"],
        "hyperparameters": [],
    }
    if old_card:
        before = {s["step"]: s["params"] for s in old_card["model_details"]["steps"]}
        for step in envelope["model_details"]["steps"]:
            for key, value in step["params"].items():
                if step["step"] in before and key in before[step["step"]] and before[step["step"]][key] != value:
                    diff["hyperparameters"].append({"parameter": f"{step['step']}.{key}", "before": before[step["step"]][key], "after": value})
    return diff


def _library_diff(old: list[str], new: list[str]) -> list[dict]:
    before = dict(r.split("==", 1) for r in old)
    after = dict(r.split("==", 1) for r in new)
    return [{"library": k, "before": before.get(k), "after": after.get(k)}
            for k in sorted(set(before) | set(after), key=str.lower) if before.get(k) != after.get(k)]
