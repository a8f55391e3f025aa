"""What the card notices on its own ("Found automatically"), and the one-line change-log summary."""

from __future__ import annotations

from .._runtime import artifacts
from . import _plots


def hints(card: dict, m: dict) -> list[dict]:
    found: list[dict] = []
    add = lambda kind, message: found.append({"kind": kind, "message": message})  # noqa: E731
    _balance_hints(card, add)
    _fairness_hints(card["fairness"], add)
    _range_hints(card["data"]["features"], add)
    evaluation = card["data"]["evaluation"]
    if evaluation and 0 < evaluation["overlap_with_training"] < 1:
        held = "it is still called held-out" if evaluation.get("held_out") else "so it is not called held-out"
        add("overlap", f"{evaluation.get('overlap_rows', '')} evaluation rows ({evaluation['overlap_with_training']:.1%}) also "
                       f"occur in the training data (same values in every column): {held}")
    if card["evaluation"].get("available") and card["evaluation"]["rows"] < 200:
        add("small_evaluation", f"only {card['evaluation']['rows']} evaluation rows: the confidence intervals are wide")
    loose = [s["parameter"] for s in card["model_details"].get("seeds", []) if not s["fixed"]]
    if loose:
        add("seeds", "random_state is not fixed for " + ", ".join(loose[:5]) + ": fitting again gives another model")
    if m["artifacts"]["model"]["format"] == artifacts.CLOUDPICKLE:
        add("serialisation", "the model is stored with cloudpickle, which runs code when loaded; deploykit verifies its "
                             "sha256 first, so only load packages whose manifest you trust")
    if not _plots.available():
        add("plots", "the card has no plots because matplotlib is not installed: pip install 'deploykit[card]'")
    if card["explainability"].get("kind") == "kernel":
        add("explanations", "explanations use Kernel SHAP, an approximation over a background sample")
    return found


def _balance_hints(card: dict, add) -> None:
    balance = card["data"]["training"]["label_balance"]
    if balance and "shares" in balance:
        label, share = min(balance["shares"].items(), key=lambda kv: kv[1])
        if share < 0.2:
            add("class_imbalance", f"class {label} is only {share:.1%} of the training rows: accuracy flatters the model; "
                                   "read recall, precision and ROC AUC per class, and consider the decision threshold")


def _fairness_hints(fairness: dict, add) -> None:
    for group in fairness.get("flagged", []):
        add("small_group", f"group {group} has fewer than {fairness['small_group_threshold']} evaluation rows: its metrics "
                           "are shown but too noisy to compare, so it raises no alarm")
    for alert in fairness.get("alerts", []):
        name = alert["name"].replace("_", " ")
        where = f"{name} across {alert['features']} is {alert['value']:.3f} (95% CI {alert['ci_low']:.3f}–{alert['ci_high']:.3f})"
        if alert["status"] == "alarm":
            add("fairness_alarm", f"{where}: the whole interval is beyond the limit {alert['limit']}")
        else:
            add("fairness_inconclusive", f"{where}: the interval includes the limit {alert['limit']}, so the data cannot "
                                         "tell whether the gap is real; more evaluation rows would")


def _range_hints(features: list[dict], add) -> None:
    outside = [f for f in features if f.get("outside_range_share")]
    for f in outside:
        add("range", f"{f['outside_range_share']:.1%} of the evaluation rows have {f['name']} outside the training range "
                     f"[{f['min']}, {f['max']}]: the model extrapolates there")
    tails = [f for f in features if f.get("tail_share", 0) > 0.05]
    if tails:
        add("range", "evaluation rows often sit near the edge of the observed range (outside the training 1st–99th "
                     "percentiles) for " + ", ".join(f"{f['name']} ({f['tail_share']:.0%})" for f in tails))
    add("range", "the service accepts numbers outside the observed training ranges (x-observed-range in /schema); "
                 "predictions there are extrapolations")
    for f in features:
        if f.get("unseen_categories"):
            add("unseen_category", f"{f['name']} takes values in the evaluation data never seen in training: "
                                   + ", ".join(map(repr, f["unseen_categories"][:5])))


def changelog_summary(log: dict) -> str:
    if not log.get("available"):
        return log["reason"]
    parts = []
    if not log.get("same_rows", True):
        parts.append("evaluated on different rows than before, so metric changes mix model and data")
    for metric in log["metrics"]:
        if metric["change"] is not None and abs(metric["change"]) > 1e-12:
            parts.append(f"{metric['name']} {metric['before']:.4g} → {metric['after']:.4g}")
    schema = log["schema"]
    if schema["added"]:
        parts.append("columns added: " + ", ".join(schema["added"]))
    if schema["removed"]:
        parts.append("columns removed: " + ", ".join(schema["removed"]))
    if schema["changed"]:
        parts.append(f"{len(schema['changed'])} column facts changed")
    if log["model"]["estimator"]:
        parts.append(f"estimator {log['model']['estimator']['before']} → {log['model']['estimator']['after']}")
    if log["model"]["hyperparameters"]:
        parts.append(", ".join(f"{h['parameter']} {h['before']} → {h['after']}" for h in log["model"]["hyperparameters"][:4]))
    if log.get("fields"):
        parts.append("card text changed: " + ", ".join(f["field"] for f in log["fields"]))
    if log.get("fairness"):
        parts.append(f"{len(log['fairness'])} fairness figures changed")
    changes = "; ".join(parts) or "no metric, schema or hyperparameter changes"
    return f"since v{log['previous_version']}: {changes}"
