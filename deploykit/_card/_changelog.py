"""What changed since the previous version of the same name: metrics, input schema, model, libraries."""

from __future__ import annotations

from .. import _paths

_COLUMN_FACTS = ("kind", "dtype", "nullable", "min", "max")


def previous_version(name: str, version: str) -> str | None:
    older = [int(p.name) for p in _paths.packages_dir(name).iterdir() if p.name.isdigit() and int(p.name) < int(version)]
    return str(max(older)) if older else None


def changelog(envelope: dict, manifest: dict) -> dict:
    name, version = manifest["name"], manifest["version"]
    before = previous_version(name, version)
    if before is None:
        return {"available": False, "reason": f"v{version} is the first version of {name!r}"}
    from .._package import Package

    old = Package.load(name, version=before)
    old_card = old.card
    old_metrics = _metrics_of(old_card.to_dict() if old_card else None, old.manifest)
    new_metrics = _metrics_of(envelope, manifest)
    return {
        "available": True,
        "previous_version": before,
        "previous_created": old.manifest.get("created"),
        "metrics": [
            {"name": m, "before": old_metrics.get(m), "after": new_metrics.get(m),
             "change": (new_metrics[m] - old_metrics[m]) if old_metrics.get(m) is not None and new_metrics.get(m) is not None else None}
            for m in sorted(set(old_metrics) | set(new_metrics))
        ],
        "schema": schema_diff(old.manifest["schema"], manifest["schema"]),
        "model": _model_diff(old_card.to_dict() if old_card else None, old.manifest, envelope, manifest),
        "libraries": _library_diff(old.manifest.get("requirements", []), manifest.get("requirements", [])),
    }


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


# -- batch runs: appended after packaging, beside the package (its card files stay as hashed) ---------
BATCH_RUNS = "batch-runs.jsonl"
_RUN_FIELDS = ("source", "destination", "rows", "scored", "rejected_rows", "chunks", "resumed_chunks", "seconds",
               "engine", "explain")


def record_batch_run(package_path, run: dict) -> None:
    """Append a batch run to the package's log; :func:`batch_runs` feeds the card's change log."""
    import datetime as dt
    import json
    from pathlib import Path

    entry = {"finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             **{key: run.get(key) for key in _RUN_FIELDS}}
    with open(Path(package_path) / BATCH_RUNS, "a") as log:
        log.write(json.dumps(entry) + "\n")


def batch_runs(package_path) -> list[dict]:
    import json
    from pathlib import Path

    log = Path(package_path) / BATCH_RUNS
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
