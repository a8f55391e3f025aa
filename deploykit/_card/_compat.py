"""Cards made before the review workflow (deploykit < issue 16) lack some keys; rendering fills them in.

Only what the templates and the verdict read is filled, with values that say "not recorded" rather than
inventing facts; the stored card is never changed.
"""

from __future__ import annotations

import copy


def for_rendering(card: dict) -> dict:
    card = copy.deepcopy(card)
    md = card["model_details"]
    md.setdefault("seeds", [])
    md.setdefault("environment", {"requirements": [], "lock": [], "lock_file": "requirements.lock",
                                  "lock_sha256": "not recorded in this card"})
    evaluation = card["data"].get("evaluation")
    if evaluation:
        share = evaluation.get("overlap_with_training", 0.0)
        evaluation.setdefault("held_out", share <= 0.01)
        evaluation.setdefault("overlap_limit", 0.01)
        evaluation.setdefault("label", "held-out data" if evaluation["held_out"] else "evaluation data")
    card["data"].setdefault("sensitive_summary", [])
    if card["io"].get("decision_threshold"):
        card["io"]["decision_threshold"].setdefault("served", None)
    if card["evaluation"].get("available"):
        card["evaluation"].setdefault("data", (evaluation or {}).get("label", "held-out data"))
        card["evaluation"].setdefault("benchmarks", [])
    _fairness(card["fairness"])
    card["review"] = {"validated_by": None, "author": None, "approvals": [], **(card.get("review") or {})}
    card["changelog"].setdefault("approvals", [])
    _operations(card["deployment"])
    for finding in card["validation"]["findings"]:
        finding.setdefault("problem", None)
    return card


def _fairness(section: dict) -> None:
    if not section.get("available"):
        return
    section.setdefault("favourable_class", None)
    section.setdefault("tolerance", 0.1)
    section.setdefault("four_fifths", None)
    section.setdefault("n_bootstrap", 0)
    section.setdefault("alerts", [])
    for analysis in section["by_feature"] + ([section["intersection"]] if section.get("intersection") else []):
        for group in analysis["groups"]:
            group.setdefault("insufficient", group.get("small", False))
            group.setdefault("ci", {})
        analysis.setdefault("gaps", [{"name": k, "value": v, "ci_low": None, "ci_high": None, "tolerance": None, "status": None}
                                     for k, v in analysis["differences"].items()])
        analysis.setdefault("adverse_impact", None)
        analysis.setdefault("groups_compared", sum(not g["insufficient"] for g in analysis["groups"]))


def _operations(section: dict) -> None:
    """Cards made before the monitoring and security sections: say so, and show no built-in facts."""
    section.setdefault("monitoring_plan", {"available": False, "reason": "this card was made before deploykit described "
                                           "its monitoring plan from the package's reference"})
    for key in ("post_market", "record_keeping", "access", "signing"):
        section.setdefault(key, None)
