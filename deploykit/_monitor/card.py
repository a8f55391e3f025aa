"""The model card's monitoring and post-market sections, as structured content made from the reference.

The card renders these; nothing here is free text the user wrote. :func:`monitoring_section` says what
is watched, with which test and threshold, and how to read the report; :func:`post_market_section`
what is recorded in service and what an operator does with it.
"""

from __future__ import annotations

from .reference import CARD_SIZES

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
        "metrics": ["deploykit_drift_value", "deploykit_drift_threshold", "deploykit_drift_detected",
                    "deploykit_drift_verdict", "deploykit_prediction_share"],
    }


def post_market_section(reference: dict, *, capture: float | None = None, retention: str | None = None) -> dict:
    """What is recorded in service (captures, outcomes), the alerts, and the review loop."""
    sensitive = [s["name"] for s in reference.get("sensitive", [])]
    return {
        "capture": {
            "fraction": capture,
            "what": "each sampled request: request id, time, version, variant, inputs and outputs, one row per instance",
            "retention": retention,
            "store": "an SQLite database in the deployment's state folder; export with the monitor's Parquet export",
        },
        "outcomes": "known labels are joined to captured predictions by request id (Deployment.log_outcomes or POST /outcomes)",
        "performance_by_group": sensitive,
        "alerts": [
            {"alert": "DeployKitDrift", "when": "the drift verdict is 1 (deploykit_drift_verdict)"},
            {"alert": "DeployKitFeatureDrift", "when": "a feature drifted (deploykit_drift_detected)"},
            {"alert": "DeployKitCaptureDropping", "when": "captures are being dropped (deploykit_capture_dropped_total)"},
            {"alert": "DeployKitErrors", "when": "over 5% of a endpoint's answers are 5xx"},
            {"alert": "DeployKitSlow", "when": "an endpoint's p99 latency is over 1 s"},
        ],
        "review": ("on a drift verdict: read the report (drifted features, unseen categories, prediction shares); "
                   "log outcomes to see whether performance fell; retrain or roll back, and record the decision"),
    }
