"""The model card's monitoring and post-market sections, as structured content made from the reference.

The card renders these; nothing here is free text the user wrote. :func:`monitoring_section` says what
is watched, with which test and threshold, and how to read the report; :func:`post_market_section`
what is recorded in service and what an operator does with it.
"""

from __future__ import annotations

import re

from .reference import CARD_SIZES

ALERTS_FILE = "monitoring/alerts.yml"  # the Prometheus rules shipped in templates/, which the card lists
SERVICE_METRICS = ("deploykit_requests_total", "deploykit_request_duration_seconds", "deploykit_capture_dropped_total")

LABELS = {"psi": "PSI", "ks": "KS", "chi2": "χ²", "null_rate": "null-rate change"}
TESTS = {
    "psi": "population stability index over the reference's decile bins (categories: one bin each, plus 'unseen')",
    "ks": "Kolmogorov-Smirnov distance between the reference's and the window's distributions",
    "chi2": "chi-square statistic of the reference's and the window's category counts",
    "null_rate": "change in the share of missing values",
}


def monitoring_section(reference: dict) -> dict:
    """What is monitored, the thresholds by window size, the verdict rule and how to read the report."""
    alpha, top = reference["alpha"], reference.get("top_features", [])
    sizes = [str(n) for n in CARD_SIZES if str(n) in reference.get("thresholds", {})]
    features = [{"name": f["name"], "kind": f["kind"], "tests": f["tests"], "top_feature": f["name"] in top,
                 "thresholds": {n: reference["thresholds"][n].get(f["name"]) for n in sizes}}
                for f in reference["features"]]
    prediction = reference.get("prediction")
    return {
        "available": True,
        "reference": {"rows": reference["rows"], "source": reference["source"]},
        "features": features,
        "prediction": None if prediction is None else {
            "what": "class shares of the predicted labels" if prediction["kind"] == "classes" else "distribution of the predicted values",
            "tests": prediction["tests"], "reference": prediction.get("source"),
            "thresholds": {n: reference["thresholds"][n].get("(prediction)") for n in sizes}},
        "tests": {name: TESTS[name] for name in sorted({t for f in features for t in f["tests"]} | set((prediction or {}).get("tests", [])))},
        "false_alarm_rate": alpha,
        "thresholds_rule": (f"each threshold is calibrated for the window's size by bootstrapping the reference "
                            f"({reference['replicates']} replicates of a pseudo-reference and a window): on data drawn like "
                            f"the reference, a feature alarms in at most {alpha:.0%} of windows, whatever its tests"),
        "window_sizes": [int(n) for n in sizes],
        "min_rows": reference["min_rows"],
        "verdict_rule": (f"drift when at least half of the {len(features)} features drift, or any of the model's top-3 "
                         f"SHAP features ({', '.join(top) or 'unknown'}) does"),
        "how_to_read": [
            f"a window under {reference['min_rows']} rows reports 'insufficient data', never drift",
            "a feature drifts when any of its tests exceeds its threshold; the report lists drifted features first, "
            "with the reference and live distributions side by side",
            "'unseen' lists category values the training data never had",
            "prediction drift with no feature drift points at a change the features do not show (or at many small ones)",
            "performance appears once outcomes are logged: accuracy (or MAE and R²) per window, with 95% intervals",
        ],
        "metrics": _metrics(),
    }


def _metrics() -> list[str]:
    """The series the deployment's /metrics carries for monitoring: the monitor's own, then the front's."""
    from .render import HELP

    return [*HELP, *SERVICE_METRICS]


def post_market_section(reference: dict, *, capture: float | None = None, retention: str | None = None) -> dict:
    """What is recorded in service (captures, outcomes), the alerts, and the review loop.

    ``capture`` and ``retention`` are what the deployment records (at packaging: deploy()'s defaults,
    which :func:`deploykit._card._operations.capture_defaults` reads from the capture writer).
    """
    from .._front.capture import FILENAME

    sensitive = [s["name"] for s in reference.get("sensitive", [])]
    return {
        "capture": {
            "fraction": capture,
            "what": "each sampled request: request id, time, version, variant, inputs and outputs, one row per instance",
            "retention": retention,
            "store": f"an SQLite database in the deployment's state folder ({FILENAME}); export with the monitor's "
                     "Parquet export",
        },
        "outcomes": "known labels are joined to captured predictions by request id (Deployment.log_outcomes or POST /outcomes)",
        "performance_by_group": sensitive,
        "alerts": alerts(),
        "alerts_file": f"templates/{ALERTS_FILE}",
        "review": ("on a drift verdict: read the report (drifted features, unseen categories, prediction shares); "
                   "log outcomes to see whether performance fell; retrain or roll back, and record the decision"),
    }


def alerts() -> list[dict]:
    """The alerting rules deploykit ships (``templates/monitoring/alerts.yml``), as the card lists them."""
    import yaml

    from .._templates import read

    rules = [rule for group in yaml.safe_load(read(ALERTS_FILE))["groups"] for rule in group["rules"]]
    return [{"alert": rule["alert"], "when": _plain(rule["annotations"]["summary"]), "for": rule.get("for"),
             "severity": rule.get("labels", {}).get("severity"), "expr": " ".join(rule["expr"].split())}
            for rule in rules]


def _plain(summary: str) -> str:
    """A rule's summary without its Prometheus label templates: ``{{ $labels.name }}`` reads ``{name}``."""
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: f"{{{m.group(1)}}}", summary)
