"""The Model Card Toolkit view of a card: the section of the JSON envelope valid against MCT schema v0.0.2.

MCT's schema allows no properties beyond its own at the root and wants metric values and bounds as
strings; everything else deploykit knows lives beside it in the envelope.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

SCHEMA_VERSION = "0.0.2"


def _text(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def to_mct(card: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "model_details": _details(card),
        "model_parameters": _parameters(card),
        "quantitative_analysis": _quantitative(card),
        "considerations": _considerations(card),
    }


def review_line(card: dict) -> str:
    """The card's review status in one sentence (approvals are added when a card is shown, see _approvals)."""
    from ._approvals import standing, summary

    review = card.get("review") or {}
    approvals = review.get("approvals") or []
    text = summary(standing(approvals, review.get("card_sha256") or "", review.get("author")))
    author = review.get("author") or {}
    who = author.get("name") or author.get("login")
    return f"Review: {text}" + (f". Author (recorded at packaging): {who}" if who else "")


def _details(card: dict) -> dict:
    md = card["model_details"]
    documentation = md["description"] or card["intended_use"]["summary"]
    details = {
        "name": md["name"],
        "overview": md["overview"] or f"{md['task']} model {md['estimator'].rsplit('.', 1)[-1]}, packaged by deploykit",
        "documentation": f"{review_line(card)}.\n\n{documentation}",
        "owners": [{k: v for k, v in owner.items() if v} for owner in md["owners"]],
        "version": {"name": md["version"], "date": md["created"][:10],
                    "diff": f"{card['changelog']['summary']}. {review_line(card)}"},
        "references": [{"reference": url} for url in md["references"] if urlparse(url).scheme in ("http", "https")],
        "path": f"model/{md['artifact']['file']}",
    }
    if md["license"]:
        details["licenses"] = [{"identifier": md["license"]}]
    return details


def _parameters(card: dict) -> dict:
    io, data = card["io"], card["data"]
    datasets = []
    for role in ("training", "evaluation"):
        facts = data[role]
        if facts is None:
            continue
        dataset = {"name": f"{role} data", "description": f"{facts['rows']} rows; sha256 {facts['sha256']}"}
        if role == "evaluation" and data["sensitive_features"]:
            dataset["sensitive"] = {"sensitive_data": list(data["sensitive_features"])}
        datasets.append(dataset)
    return {
        "model_architecture": card["model_details"]["architecture"],
        "data": datasets,
        "input_format": 'JSON: {"instances": [{column: value, ...}, ...]}; one object per row, described by the '
                        "JSON Schema at GET /schema",
        "input_format_map": [{"key": f["name"], "value": _feature_text(f)} for f in data["features"]],
        "output_format": io["output"]["predictions"],
        "output_format_map": [{"key": k, "value": v} for k, v in io["output"].items() if v],
    }


def _feature_text(feature: dict) -> str:
    text = f"{feature['kind']} ({feature['dtype']})"
    if feature["categories"] is not None:
        return text + ": one of " + json.dumps(feature["categories"][:20])
    if feature["min"] is not None:
        return text + f", observed {feature['min']} to {feature['max']}"
    return text


def _metric(name: str, value, low, high, where: str) -> dict:
    metric = {"type": name, "value": _text(value), "slice": where}
    if low is not None and high is not None:
        metric["confidence_interval"] = {"lower_bound": _text(low), "upper_bound": _text(high)}
    return metric


def _quantitative(card: dict) -> dict:
    metrics = []
    evaluation = card["evaluation"]
    if evaluation.get("available"):
        where = evaluation.get("data", "held-out data")
        metrics += [_metric(m["name"], m["value"], m["ci_low"], m["ci_high"], where)
                    for m in evaluation["metrics"] if m["value"] is not None]
        for row in evaluation.get("per_class", []):
            metrics += [_metric(m["name"], m["value"], m["ci_low"], m["ci_high"], f"{where}, class {row['class']}")
                        for m in row["metrics"]]
        for bench in evaluation.get("benchmarks", []):
            if bench["available"]:
                metrics += [_metric(f"{d['name']} difference", d["value"], d["ci_low"], d["ci_high"],
                                    f"{where}, this model minus {bench['name']}")
                            for d in bench["differences"] if d["value"] is not None]
    fairness = card["fairness"]
    if fairness.get("available"):
        metrics += _fairness_metrics(fairness)
    graphics = [{"name": p["title"], "image": p["png"]} for p in card["plots"].values()]
    return {
        "performance_metrics": metrics,
        "graphics": {"description": "plots of the evaluation, calibration, group metrics and SHAP values", "collection": graphics},
    }


def _fairness_metrics(fairness: dict) -> list[dict]:
    metrics = []
    for analysis in fairness["by_feature"] + ([fairness["intersection"]] if fairness["intersection"] else []):
        for group in analysis["groups"]:
            ci = group.get("ci") or {}
            metrics += [_metric(name, group[name], *(ci.get(name) or [None, None]), group["group"])
                        for name in fairness["metrics"] if group[name] is not None]
        where = " × ".join(analysis["features"])
        for gap in analysis.get("gaps") or []:
            if gap["value"] is not None:
                metrics.append(_metric(gap["name"], gap["value"], gap["ci_low"], gap["ci_high"], where))
        impact = analysis.get("adverse_impact")
        if impact:
            metrics.append(_metric("adverse_impact_ratio", impact["ratio"], impact.get("ci_low"), impact.get("ci_high"), where))
    return metrics


def _considerations(card: dict) -> dict:
    use, risks = card["intended_use"], card["risks"]
    limitations = risks["limitations"] + [hint["message"] for hint in risks["hints"]]
    return {
        "users": [{"description": u} for u in use["users"]],
        "use_cases": [{"description": u} for u in use["primary_uses"]]
        + [{"description": f"out of scope: {u}"} for u in use["out_of_scope"]],
        "limitations": [{"description": text} for text in limitations],
        "tradeoffs": [{"description": t} for t in risks["tradeoffs"]],
        "ethical_considerations": [
            {k: v for k, v in {"name": r["name"], "mitigation_strategy": r["mitigation"]}.items() if v}
            for r in risks["risks"]
        ] + _operational_risks(card.get("deployment") or {}),
    }


def _operational_risks(deployment: dict) -> list[dict]:
    """MCT has no monitoring or logging section: deploykit's built-in measures go in as risks with their mitigation."""
    risks = []
    plan = deployment.get("monitoring_plan") or {}
    if plan.get("available"):
        risks.append({"name": "the inputs or predictions drift away from the training data in service",
                      "mitigation_strategy": f"monitoring plan ({plan['meets']}): {plan['verdict_rule']}; "
                                             f"{plan['thresholds_rule']}"})
    record, access, integrity = (deployment.get(k) for k in ("record_keeping", "access", "signing"))
    if record and access and integrity:
        log = record["audit_log"]
        risks.append({"name": "a prediction or a deploy action cannot be traced afterwards, or the service is called or "
                              "changed by someone not entitled to",
                      "mitigation_strategy": f"record-keeping ({record['meets']}): {log['chain']}; signed checkpoints "
                                             f"every {log['checkpoints']['every_records']} records or "
                                             f"{log['checkpoints']['every_seconds']:g} s; {log['verify']}. Access: "
                                             f"{access['default']}. Integrity: package signed with Ed25519 key "
                                             f"{integrity['signed_by']}, verified at {', '.join(integrity['verified_at'])}"})
    return risks
