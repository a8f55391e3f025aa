"""Live performance from logged outcomes: per window with 95% confidence intervals, over time, and
per sensitive group.

Classifiers: accuracy (and, for two classes, precision and recall of the positive class), each with a
Wilson score interval. Regressors: MAE and RMSE with a normal interval on the mean error, and R²
with a bootstrap interval. Labels compare as text, so 1 and 1.0 and "1" are the same class.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .reference import _label

Z = 1.959963984540054  # two-sided 95%
R2_REPLICATES = 400
TIME_BUCKETS = 6
SMALL_GROUP = 30  # as the card's fairness section


def performance(frame: pd.DataFrame, reference: dict, *, buckets: int = TIME_BUCKETS) -> dict | None:
    """Metrics over the window's rows that have an outcome (``y_true``) and a prediction; None if none do."""
    if "y_true" not in frame.columns:
        return None
    labelled = frame[frame["y_true"].notna() & frame["prediction"].notna()]
    if labelled.empty:
        return None
    task = reference.get("task") or "binary"
    positive = (reference.get("classes") or [None, None])[-1] if task == "binary" else None
    result = {
        "rows": int(len(labelled)),
        "task": task,
        "metrics": metrics(labelled["y_true"], labelled["prediction"], task, positive),
        "over_time": _over_time(labelled, task, positive, buckets),
        "by_group": _by_group(labelled, reference.get("sensitive", []), task, positive),
    }
    return result


def metrics(y_true, y_pred, task: str, positive=None) -> list[dict]:
    """``[{"name", "value", "low", "high", "rows"}]`` for one set of outcomes."""
    if task == "regression":
        return _regression(np.asarray(y_true, dtype="float64"), np.asarray(y_pred, dtype="float64"))
    truth, predicted = labels(y_true), labels(y_pred)
    out = [_rate("accuracy", int((truth == predicted).sum()), len(truth))]
    if positive is not None:
        positive = _label(positive)
        said, real = predicted == positive, truth == positive
        out.append(_rate("precision", int((said & real).sum()), int(said.sum())))
        out.append(_rate("recall", int((said & real).sum()), int(real.sum())))
    return out


def labels(values) -> np.ndarray:
    """Values as label text (:func:`deploykit._monitor.reference._label`), converting each distinct value once.

    Object values are converted one by one: 1 and True hash alike but are different labels.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if series.dtype == object:
        return np.asarray([_label(v) for v in series], dtype=object)
    codes, uniques = pd.factorize(series)
    text = np.asarray([_label(v) for v in uniques] + [None], dtype=object)
    return text[codes]  # code -1 (a null) picks the trailing None


def wilson(successes: int, trials: int) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (95%)."""
    if trials == 0:
        return None, None
    p = successes / trials
    centre = (p + Z * Z / (2 * trials)) / (1 + Z * Z / trials)
    half = Z * math.sqrt(p * (1 - p) / trials + Z * Z / (4 * trials * trials)) / (1 + Z * Z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(name: str, successes: int, trials: int) -> dict:
    low, high = wilson(successes, trials)
    return {"name": name, "value": successes / trials if trials else None, "low": low, "high": high, "rows": trials}


def _regression(truth: np.ndarray, predicted: np.ndarray) -> list[dict]:
    errors = predicted - truth
    n = len(errors)
    absolute, squared = np.abs(errors), errors ** 2
    mae_half = Z * absolute.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    mse, mse_half = squared.mean(), (Z * squared.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan"))
    out = [
        {"name": "mae", "value": float(absolute.mean()), "low": _finite(absolute.mean() - mae_half),
         "high": _finite(absolute.mean() + mae_half), "rows": n},
        {"name": "rmse", "value": float(math.sqrt(mse)), "low": _finite(math.sqrt(max(mse - mse_half, 0.0))),
         "high": _finite(math.sqrt(mse + mse_half)), "rows": n},
    ]
    out.append({"name": "r2", **_r2(truth, predicted), "rows": n})
    return out


def _r2(truth: np.ndarray, predicted: np.ndarray) -> dict:
    def r2(t, p):
        spread = ((t - t.mean()) ** 2).sum()
        return 1 - ((t - p) ** 2).sum() / spread if spread > 0 else float("nan")

    value = r2(truth, predicted)
    if len(truth) < 3:
        return {"value": _finite(value), "low": None, "high": None}
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(truth), size=(R2_REPLICATES, len(truth)))
    draws = np.array([r2(truth[i], predicted[i]) for i in picks])
    draws = draws[np.isfinite(draws)]
    low, high = (np.quantile(draws, [0.025, 0.975]) if draws.size else (None, None))
    return {"value": _finite(value), "low": _finite(low), "high": _finite(high)}


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _over_time(labelled: pd.DataFrame, task: str, positive, buckets: int) -> list[dict]:
    """The window cut into up to ``buckets`` consecutive slices of equal row counts (at least 30 rows each)."""
    ordered = labelled.sort_values("time")
    count = max(1, min(buckets, len(ordered) // SMALL_GROUP))
    out = []
    for part in np.array_split(np.arange(len(ordered)), count):
        rows = ordered.iloc[part]
        out.append({"start": float(rows["time"].iloc[0]), "end": float(rows["time"].iloc[-1]), "rows": int(len(rows)),
                    "metrics": metrics(rows["y_true"], rows["prediction"], task, positive)})
    return out


def _by_group(labelled: pd.DataFrame, sensitive: list[dict], task: str, positive) -> list[dict]:
    out = []
    for spec in sensitive:
        if spec["name"] not in labelled.columns:
            continue
        groups = _groups(labelled[spec["name"]], spec)
        for group, rows in labelled.groupby(groups, sort=True, dropna=False):
            out.append({"feature": spec["name"], "group": str(group), "rows": int(len(rows)),
                        "small": len(rows) < SMALL_GROUP,
                        "metrics": metrics(rows["y_true"], rows["prediction"], task, positive)})
    return out


def _groups(values: pd.Series, spec: dict) -> pd.Series:
    if spec.get("grouping") == "quartiles":
        numbers = pd.to_numeric(values, errors="coerce")
        edges = [-np.inf, *spec["edges"], np.inf]
        labels = [f"{spec['name']} ≤ {spec['edges'][0]:g}"] + [
            f"{spec['name']} {a:g}–{b:g}" for a, b in zip(spec["edges"], spec["edges"][1:])] + [
            f"{spec['name']} > {spec['edges'][-1]:g}"]
        return pd.cut(numbers, edges, labels=labels).astype(object).where(numbers.notna(), "(missing)")
    return values.map(lambda v: "(missing)" if v is None or (isinstance(v, float) and math.isnan(v)) else _label(v))
