"""The card's first page: a verdict a non-technical reviewer can read, and a glossary of its terms.

Colours follow one rule: ``bad`` (red) blocks or alarms, ``warn`` (amber) needs a look, ``ok``
(green) passed, ``muted`` (grey) says nothing either way. The ``internal`` profile is never shown as
a pass for a regulated use: it only checks deploykit's own basics.
"""

from __future__ import annotations

from . import _approvals

HEADLINE = {"binary": ("roc_auc", "recall", "precision", "brier"), "multiclass": ("accuracy", "f1", "roc_auc"),
            "regression": ("mae", "rmse", "r2")}
BENCHMARK_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "mae"}
LOWER_IS_BETTER = {"brier", "log_loss", "mae", "rmse"}

GLOSSARY = {
    "held-out data": "rows the model never saw while it was trained; metrics on them estimate how it does on new cases",
    "95% CI": "confidence interval: the range the metric would plausibly take on another sample of the same size "
              "(1,000 bootstrap resamples of the evaluation rows)",
    "positive class": "the outcome the model flags; precision, recall and the rates are about it",
    "decision threshold": "the probability of the positive class at or above which a row is flagged",
    "ROC AUC": "the chance a random positive case scores higher than a random negative one (0.5 = coin toss, 1 = perfect)",
    "Gini": "2 × ROC AUC − 1, the credit-scoring convention (0 = no discrimination, 1 = perfect)",
    "KS": "Kolmogorov–Smirnov: the largest gap between the score distributions of positives and negatives",
    "Recall": "share of the actual positives the model flags (also called sensitivity or true positive rate)",
    "Precision": "share of the flagged rows that are actually positive",
    "Brier score": "mean squared error of the predicted probabilities (0 = perfect; lower is better)",
    "Calibration": "whether predicted probabilities match observed frequencies (a 30% score should come true 30% of the time)",
    "Demographic parity difference": "the largest gap in the share flagged between groups",
    "Equalized odds difference": "the largest gap in true or false positive rate between groups",
    "Adverse impact ratio": "the lowest group's rate of the favourable outcome divided by the highest group's; "
                            "below 0.8 fails the four-fifths rule of thumb",
    "Insufficient group": "a group with too few evaluation rows to compare; shown, but never raises an alarm",
    "Baseline": "a simple model (logistic or ridge regression) trained on the same data, to show what the complex model adds",
}

_STATE = {"approved": "ok", "conditions": "warn", "rejected": "bad", "not reviewed": "bad"}


def verdict(card: dict, label) -> dict:
    """Everything the first page shows, with a colour state for each part."""
    return {"profile": _profile(card), "review": _review(card), "data": _data(card), "settings": _settings(card),
            "metrics": _metrics(card), "fairness": _fairness(card), "benchmarks": _benchmarks(card, label)}


def _profile(card: dict) -> dict:
    findings = card["validation"]["findings"]
    errors = sum(f["severity"] == "error" for f in findings)
    warnings = len(findings) - errors
    profile = card["validation"]["profile"]
    state = "bad" if errors else ("warn" if warnings else "ok")
    text = f"{errors} error(s), {warnings} warning(s)"
    note = None
    if profile == "internal":
        state = "bad" if errors else "warn"
        note = ("checked against deploykit's internal basics only, not against a regulatory profile "
                "(eu-ai-act-high-risk, us-bank-mrm, hipaa)")
    return {"name": profile, "errors": errors, "warnings": warnings, "state": state, "text": text, "note": note,
            "findings": sorted(findings, key=lambda f: f["severity"] != "error")[:4]}


def _review(card: dict) -> dict:
    review = card.get("review") or {}
    standing = _approvals.standing(review.get("approvals") or [], review.get("card_sha256") or "", review.get("author"))
    author = review.get("author") or {}
    shown = lambda records: [{**d, "signed": _approvals.signer(d)} for d in records]  # noqa: E731
    return {"status": standing["status"], "state": _STATE[standing["status"]], "summary": _approvals.summary(standing),
            "decisions": shown(standing["decisions"]), "unverified": shown(standing["unverified"]),
            "author": author.get("name") or author.get("login"), "validated_by": review.get("validated_by"),
            "stale": len(standing["stale"]), "signed": standing["signed"]}


def _data(card: dict) -> dict:
    evaluation = card["data"]["evaluation"]
    if evaluation is None:
        return {"state": "bad", "text": "no evaluation data: the metrics are missing", "label": None}
    share = evaluation["overlap_with_training"]
    state = "ok" if share == 0 else ("warn" if evaluation.get("held_out", share <= 0.01) else "bad")
    text = f"{evaluation['rows']:,} rows" + (f"; {share:.1%} also occur in training" if share else "; none seen in training")
    return {"state": state, "text": text, "label": evaluation.get("label", "held-out data")}


def _settings(card: dict) -> str | None:
    settings = card["io"].get("decision_threshold")
    if not settings or "positive_class" not in settings:
        return None
    return (f"positive class {settings['positive_class']!r}, decision threshold {settings['threshold']:g}"
            f" ({settings['source']})")


def _metrics(card: dict) -> list[dict]:
    evaluation = card["evaluation"]
    if not evaluation.get("available"):
        return []
    by_name = {m["name"]: m for m in evaluation["metrics"]}
    wanted = HEADLINE[card["model_details"]["task"]]
    return [by_name[name] for name in wanted if name in by_name and by_name[name]["value"] is not None]


def _fairness(card: dict) -> dict:
    fairness = card["fairness"]
    if not fairness.get("available"):
        return {"state": "muted", "text": "not measured: no sensitive features declared", "alerts": [], "insufficient": []}
    alerts = fairness.get("alerts", [])
    alarms = [a for a in alerts if a["status"] == "alarm"]
    state = "bad" if alarms else ("warn" if alerts else "ok")
    text = (f"{len(alarms)} alarm(s): the interval lies beyond the limit" if alarms else
            f"{len(alerts)} gap(s) whose interval includes the limit" if alerts else
            "no gap beyond the limit in " + ", ".join(fairness["features"]))
    return {"state": state, "text": text, "alerts": alerts, "insufficient": fairness.get("flagged", [])}


def _benchmarks(card: dict, label) -> list[dict]:
    task = card["model_details"]["task"]
    name = BENCHMARK_METRIC[task]
    rows = []
    for bench in card["evaluation"].get("benchmarks", []):
        if not bench["available"]:
            continue
        diff = next((d for d in bench["differences"] if d["name"] == name), None)
        if diff is None or diff["value"] is None:
            continue
        better = diff["ci_low"] > 0 if name not in LOWER_IS_BETTER else diff["ci_high"] < 0
        worse = diff["ci_high"] < 0 if name not in LOWER_IS_BETTER else diff["ci_low"] > 0
        rows.append({**diff, "name": bench["name"], "metric": label(name),
                     "state": "ok" if better else ("bad" if worse else "warn"),
                     "reading": "better" if better else ("worse" if worse else "no clear difference")})
    return rows
