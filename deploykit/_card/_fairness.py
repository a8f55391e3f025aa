"""Group metrics over declared sensitive features, with fairlearn's MetricFrame.

For a binary classifier: count, selection rate, accuracy, true and false positive rates per group,
demographic parity difference and equalized odds difference, per feature and for their intersection.
Multiclass classifiers get count, accuracy and macro recall per group; regressors count, MAE and mean
prediction. Groups smaller than ``SMALL_GROUP`` rows are flagged: their rates are too noisy to compare.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

SMALL_GROUP = 30


def _metrics(task: str, classes: list | None) -> dict:
    from fairlearn.metrics import count, false_positive_rate, mean_prediction, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, mean_absolute_error, recall_score

    if task == "binary":
        return {"count": count, "selection_rate": selection_rate, "accuracy": accuracy_score,
                "tpr": true_positive_rate, "fpr": false_positive_rate}
    if task == "multiclass":
        def recall_macro(y_true, y_pred):
            return recall_score(y_true, y_pred, average="macro", labels=classes, zero_division=0)

        return {"count": count, "accuracy": accuracy_score, "recall_macro": recall_macro}
    return {"count": count, "mae": mean_absolute_error, "mean_prediction": mean_prediction}


def fairness(y_true, y_pred, sensitive: pd.DataFrame, task: str, classes: list | None) -> dict:
    """The fairness section of the card (see the module docstring)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if task == "binary":  # fairlearn's rates are about the positive class as 1
        y_true, y_pred = (y_true == classes[1]).astype(int), (y_pred == classes[1]).astype(int)
    metrics = _metrics(task, classes)
    features = list(sensitive.columns)
    groupings = [[feature] for feature in features] + ([features] if len(features) > 1 else [])
    analyses = [_analyse(y_true, y_pred, sensitive[cols].reset_index(drop=True), metrics, task) for cols in groupings]
    flagged = [f"{g['group']} (n={g['count']})" for a in analyses for g in a["groups"] if g["small"]]
    return {
        "available": True,
        "features": features,
        "positive_class": classes[1] if task == "binary" else None,
        "metrics": list(metrics),
        "small_group_threshold": SMALL_GROUP,
        "by_feature": analyses[: len(features)],
        "intersection": analyses[len(features)] if len(features) > 1 else None,
        "flagged": sorted(set(flagged)),
    }


def _analyse(y_true, y_pred, groups: pd.DataFrame, metrics: dict, task: str) -> dict:
    from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference

    columns = list(groups.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined rates (a group without positives) are reported as null
        frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
        by_group = frame.by_group
        differences = {name: _number(value) for name, value in frame.difference(method="between_groups").items()
                       if name != "count"}
        if task == "binary":
            differences["demographic_parity_difference"] = _number(
                demographic_parity_difference(y_true, y_pred, sensitive_features=groups))
            differences["equalized_odds_difference"] = _number(
                equalized_odds_difference(y_true, y_pred, sensitive_features=groups))
    rows = []
    for key, values in by_group.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{c}={v}" for c, v in zip(columns, key))
        row = {"group": label, "values": {c: str(v) for c, v in zip(columns, key)}}
        row.update({name: _number(values[name]) for name in metrics})
        row["count"] = int(values["count"])
        row["small"] = row["count"] < SMALL_GROUP
        rows.append(row)
    return {"features": columns, "groups": rows, "differences": differences}


def _number(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
