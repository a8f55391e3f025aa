"""Group metrics over declared sensitive features: fairlearn's values, bootstrap intervals, and alarms.

For a binary classifier, per group: count, selection rate (share flagged as the positive class),
accuracy, true and false positive rates, and calibration (mean score against the observed rate, Brier
score); per feature and for the intersection of the features, the demographic parity difference, the
equalized odds difference and the adverse impact ratio (the four-fifths rule). Multiclass classifiers
get count, accuracy and macro recall per group; regressors count, MAE and mean prediction.

Point values come from fairlearn's ``MetricFrame``. Intervals come from the same row bootstrap as the
evaluation (:func:`deploykit._card._evaluate.resamples`), every group and gap computed for every
resample as weighted sums. Groups under ``MIN_GROUP`` rows are *insufficient*: shown, never compared,
never an alarm. A gap raises an alarm only when its whole interval lies beyond the tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._evaluate import CONFIDENCE, N_BOOTSTRAP, percentile_interval, resamples

MIN_GROUP = 30
SMALL_GROUP = MIN_GROUP  # the name earlier cards used
TOLERANCE = 0.1  # for differences of rates between groups
FOUR_FIFTHS = 0.8  # adverse impact ratio below which selection is presumed adverse (29 CFR 1607.4(D))
ALARM_GAPS = {"binary": ("demographic_parity_difference", "equalized_odds_difference"),
              "multiclass": ("accuracy", "recall_macro"), "regression": ()}
ALARM, INCONCLUSIVE, WITHIN, TOO_FEW = "alarm", "inconclusive", "within tolerance", "not enough groups"


def fairness(y_true, y_pred, sensitive: pd.DataFrame, task: str, classes: list | None, *, proba=None,
             positive=None, favourable=None, seed: int = 0) -> dict:
    """The fairness section of the card (see the module docstring)."""
    data = _Arrays.make(y_true, y_pred, proba, task, classes, positive, favourable)
    features = list(sensitive.columns)
    groupings = [[feature] for feature in features] + ([features] if len(features) > 1 else [])
    frames = [sensitive[cols].reset_index(drop=True) for cols in groupings]
    analyses = [_point_analysis(data, frame) for frame in frames]
    _add_intervals(data, frames, analyses, seed)
    for analysis in analyses:
        analysis["gaps"] = [_status(gap, task) for gap in analysis["gaps"]]
        if analysis.get("adverse_impact"):
            analysis["adverse_impact"] = _impact_status(analysis["adverse_impact"])
    flagged = [f"{g['group']} (n={g['count']})" for a in analyses for g in a["groups"] if g["insufficient"]]
    return {
        "available": True,
        "features": features,
        "positive_class": data.positive,
        "favourable_class": data.favourable,
        "metrics": list(data.metric_names),
        "small_group_threshold": MIN_GROUP,
        "tolerance": TOLERANCE,
        "four_fifths": FOUR_FIFTHS if task == "binary" else None,
        "n_bootstrap": N_BOOTSTRAP,
        "confidence": CONFIDENCE,
        "by_feature": analyses[: len(features)],
        "intersection": analyses[len(features)] if len(features) > 1 else None,
        "flagged": sorted(set(flagged)),
        "alerts": _alerts(analyses),
    }


class _Arrays:
    """The evaluation rows as the group metrics see them: 0/1 indicators for a binary classifier."""

    def __init__(self, task, y, yhat, score, classes, positive, favourable, metric_names):
        self.task, self.y, self.yhat, self.score, self.classes = task, y, yhat, score, classes
        self.positive, self.favourable, self.metric_names = positive, favourable, metric_names

    @classmethod
    def make(cls, y_true, y_pred, proba, task, classes, positive, favourable):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if task != "binary":
            names = ("count", "accuracy", "recall_macro") if task == "multiclass" else ("count", "mae", "mean_prediction")
            return cls(task, y_true, y_pred, None, classes, None, None, names)
        positive = classes[1] if positive is None else positive
        favourable = next(c for c in classes if c != positive) if favourable is None else favourable
        y, yhat = (y_true == positive).astype(float), (y_pred == positive).astype(float)
        score = None if proba is None else np.asarray(proba, dtype="float64")[:, classes.index(positive)]
        names = ("count", "selection_rate", "accuracy", "tpr", "fpr") + (() if score is None else ("mean_score", "observed_rate", "brier"))
        return cls(task, y, yhat, score, classes, positive, favourable, names)


# -- point values (fairlearn) -----------------------------------------------------------------------------
def _fairlearn_metrics(data: _Arrays) -> tuple[dict, dict]:
    from fairlearn.metrics import count, false_positive_rate, mean_prediction, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, mean_absolute_error, recall_score

    if data.task == "binary":
        metrics = {"count": count, "selection_rate": selection_rate, "accuracy": accuracy_score,
                   "tpr": true_positive_rate, "fpr": false_positive_rate}
        if data.score is None:
            return metrics, {}
        metrics.update(mean_score=lambda y_true, y_pred, score: float(np.mean(score)),
                       observed_rate=lambda y_true, y_pred, score: float(np.mean(y_true)),
                       brier=lambda y_true, y_pred, score: float(np.mean((score - y_true) ** 2)))
        return metrics, {name: {"score": data.score} for name in ("mean_score", "observed_rate", "brier")}
    if data.task == "multiclass":
        def recall_macro(y_true, y_pred):
            return recall_score(y_true, y_pred, average="macro", labels=data.classes, zero_division=0)

        return {"count": count, "accuracy": accuracy_score, "recall_macro": recall_macro}, {}
    return {"count": count, "mae": mean_absolute_error, "mean_prediction": mean_prediction}, {}


def _point_analysis(data: _Arrays, groups: pd.DataFrame) -> dict:
    from fairlearn.metrics import MetricFrame

    metrics, params = _fairlearn_metrics(data)
    columns = list(groups.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined rates (a group without positives) are reported as null
        frame = MetricFrame(metrics=metrics, y_true=data.y, y_pred=data.yhat, sensitive_features=groups,
                            sample_params=params or None)
        by_group = frame.by_group
    rows = []
    for key, values in by_group.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        row = {"group": ", ".join(f"{c}={v}" for c, v in zip(columns, key)), "values": {c: str(v) for c, v in zip(columns, key)}}
        row.update({name: _number(values[name]) for name in metrics})
        row["count"] = int(values["count"])
        row["insufficient"] = row["small"] = row["count"] < MIN_GROUP
        rows.append(row)
    analysis = {"features": columns, "groups": rows}
    compared = [r for r in rows if not r["insufficient"]]
    analysis["differences"] = _differences(data, compared)
    analysis["groups_compared"] = len(compared)
    analysis["adverse_impact"] = None
    if data.task == "binary":
        for row in rows:
            row["favourable_rate"] = _favourable(data, row["selection_rate"])
        analysis["adverse_impact"] = _impact(compared)
    return analysis


def _differences(data: _Arrays, compared: list[dict]) -> dict:
    """Max minus min over the groups large enough to compare (fairlearn's ``between_groups``)."""
    spread = {}
    for name in data.metric_names[1:]:
        values = [r[name] for r in compared if r[name] is not None]
        spread[name] = max(values) - min(values) if len(compared) >= 2 and values else None
    if data.task == "binary":
        spread["demographic_parity_difference"] = spread["selection_rate"]
        tpr, fpr = spread["tpr"], spread["fpr"]
        spread["equalized_odds_difference"] = None if tpr is None or fpr is None else max(tpr, fpr)
    return spread


def _favourable(data: _Arrays, selection_rate):
    if selection_rate is None:
        return None
    return selection_rate if data.favourable == data.positive else 1 - selection_rate


def _impact(compared: list[dict]) -> dict | None:
    rates = {r["group"]: r["favourable_rate"] for r in compared if r["favourable_rate"] is not None}
    if len(rates) < 2 or max(rates.values()) == 0:
        return None
    best, worst = max(rates, key=rates.get), min(rates, key=rates.get)
    return {"ratio": rates[worst] / rates[best], "reference_group": best, "lowest_group": worst,
            "threshold": FOUR_FIFTHS}


def _number(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# -- intervals --------------------------------------------------------------------------------------------
def _add_intervals(data: _Arrays, frames: list[pd.DataFrame], analyses: list[dict], seed: int) -> None:
    """Bootstrap every group's metrics and every gap over the same resamples as the evaluation."""
    masks = [[_mask(frame, row["values"]) for row in analysis["groups"]] for frame, analysis in zip(frames, analyses)]
    draws: list[dict[str, list]] = [{} for _ in analyses]
    for W in resamples(len(data.y), seed):
        for k, analysis in enumerate(analyses):
            per_group = group_draws(W, masks[k], data)
            for name, values in per_group.items():
                draws[k].setdefault(name, []).append(values)
            compared = [i for i, row in enumerate(analysis["groups"]) if not row["insufficient"]]
            for name, values in gap_draws(per_group, compared, data).items():
                draws[k].setdefault(f"gap:{name}", []).append(values)
    for analysis, collected in zip(analyses, draws):
        stacked = {name: np.concatenate(chunks) for name, chunks in collected.items()}
        for i, row in enumerate(analysis["groups"]):
            row["ci"] = {name: list(percentile_interval(stacked[name][:, i])) for name in data.metric_names if name != "count"}
        analysis["gaps"] = [
            {"name": name, "value": value, **dict(zip(("ci_low", "ci_high"), percentile_interval(stacked[f"gap:{name}"])))}
            for name, value in analysis["differences"].items()
        ]
        if analysis.get("adverse_impact"):
            low, high = percentile_interval(stacked["gap:adverse_impact_ratio"])
            analysis["adverse_impact"].update(ci_low=low, ci_high=high)


def _mask(frame: pd.DataFrame, values: dict) -> np.ndarray:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in values.items():
        mask &= frame[column].astype(str).to_numpy() == value
    return mask


def group_draws(W: np.ndarray, masks: list[np.ndarray], data: _Arrays) -> dict[str, np.ndarray]:
    """Each group metric for each resample (resamples × groups), as weighted sums; unit weights give fairlearn's values."""
    M = np.stack(masks, axis=1).astype("float64")  # rows × groups
    n = W @ M
    with np.errstate(divide="ignore", invalid="ignore"):
        if data.task == "binary":
            y, yhat = data.y, data.yhat
            out = {"selection_rate": (W @ (M * yhat[:, None])) / n, "accuracy": (W @ (M * (y == yhat)[:, None])) / n,
                   "tpr": (W @ (M * (y * yhat)[:, None])) / (W @ (M * y[:, None])),
                   "fpr": (W @ (M * ((1 - y) * yhat)[:, None])) / (W @ (M * (1 - y)[:, None]))}
            if data.score is not None:
                out.update(mean_score=(W @ (M * data.score[:, None])) / n, observed_rate=(W @ (M * y[:, None])) / n,
                           brier=(W @ (M * ((data.score - y) ** 2)[:, None])) / n)
            out["favourable_rate"] = out["selection_rate"] if data.favourable == data.positive else 1 - out["selection_rate"]
            return out
        if data.task == "multiclass":
            correct = (data.y == data.yhat).astype("float64")
            recalls = []
            for c in data.classes:
                truth = (data.y == c).astype("float64")
                hit, total = W @ (M * (truth * correct)[:, None]), W @ (M * truth[:, None])
                recalls.append(np.divide(hit, total, out=np.zeros_like(hit), where=total > 0))  # zero_division=0
            return {"accuracy": (W @ (M * correct[:, None])) / n, "recall_macro": np.mean(recalls, axis=0)}
        error = np.abs(data.y.astype("float64") - data.yhat.astype("float64"))
        return {"mae": (W @ (M * error[:, None])) / n, "mean_prediction": (W @ (M * data.yhat.astype("float64")[:, None])) / n}


def gap_draws(per_group: dict[str, np.ndarray], compared: list[int], data: _Arrays) -> dict[str, np.ndarray]:
    """Max minus min over the compared groups, per resample (and the adverse impact ratio)."""
    rows = len(next(iter(per_group.values())))
    if len(compared) < 2:
        empty = np.full(rows, np.nan)
        return {name: empty for name in [*data.metric_names[1:], "demographic_parity_difference",
                                         "equalized_odds_difference", "adverse_impact_ratio"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-undefined slices give NaN, left out of the interval
        spread = {name: np.nanmax(per_group[name][:, compared], axis=1) - np.nanmin(per_group[name][:, compared], axis=1)
                  for name in data.metric_names[1:]}
        if data.task == "binary":
            spread["demographic_parity_difference"] = spread["selection_rate"]
            spread["equalized_odds_difference"] = np.maximum(spread["tpr"], spread["fpr"])
            rates = per_group["favourable_rate"][:, compared]
            with np.errstate(divide="ignore", invalid="ignore"):
                spread["adverse_impact_ratio"] = np.nanmin(rates, axis=1) / np.nanmax(rates, axis=1)
    return spread


# -- verdicts ---------------------------------------------------------------------------------------------
def _status(gap: dict, task: str) -> dict:
    if gap["name"] not in ALARM_GAPS[task]:
        return {**gap, "tolerance": None, "status": None}
    if gap["value"] is None or gap["ci_low"] is None:
        status = TOO_FEW
    elif gap["ci_low"] > TOLERANCE:
        status = ALARM
    elif gap["ci_high"] <= TOLERANCE:
        status = WITHIN
    else:
        status = INCONCLUSIVE
    return {**gap, "tolerance": TOLERANCE, "status": status}


def _impact_status(impact: dict) -> dict:
    if impact.get("ci_high") is None:
        status = INCONCLUSIVE
    elif impact["ci_high"] < FOUR_FIFTHS:
        status = ALARM
    elif impact["ci_low"] >= FOUR_FIFTHS:
        status = WITHIN
    else:
        status = INCONCLUSIVE
    return {**impact, "status": status}


def _alerts(analyses: list[dict]) -> list[dict]:
    alerts = []
    for analysis in analyses:
        where = " × ".join(analysis["features"])
        for gap in analysis["gaps"]:
            if gap["status"] in (ALARM, INCONCLUSIVE):
                alerts.append({"features": where, "name": gap["name"], "value": gap["value"], "ci_low": gap["ci_low"],
                               "ci_high": gap["ci_high"], "limit": gap["tolerance"], "status": gap["status"]})
        impact = analysis.get("adverse_impact")
        if impact and impact["status"] in (ALARM, INCONCLUSIVE):
            alerts.append({"features": where, "name": "adverse_impact_ratio", "value": impact["ratio"],
                           "ci_low": impact["ci_low"], "ci_high": impact["ci_high"], "limit": FOUR_FIFTHS,
                           "status": impact["status"]})
    return sorted(alerts, key=lambda a: a["status"] != ALARM)
