"""Drift of a window of live rows against the package's reference fingerprint.

Per feature: numeric columns get PSI on the reference's decile bins and KS; categorical ones PSI with
an "unseen" bin and chi-square; every column the change in its null rate; unseen categories are listed.
The model's outputs get the same tests (class shares, or the value distribution). Each threshold is
calibrated for the window's size (:mod:`deploykit._monitor.stats`). A window of fewer than
``min_rows`` rows reports "insufficient data" rather than drift. The verdict is drift when at least
half of the monitored features drift, or any of the model's top-3 SHAP features does.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from . import stats
from .reference import as_text

PREDICTION = "(prediction)"


def live_counts(spec: dict, values: pd.Series) -> tuple[np.ndarray, list]:
    """The window's counts over the reference's bins (last bin: nulls), and its unseen categories."""
    values = pd.Series(values) if not isinstance(values, pd.Series) else values
    if spec["kind"] == "numeric":
        numbers = values.to_numpy() if values.dtype == "float64" else \
            pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        nulls = int(np.isnan(numbers).sum())
        # NaN sorts after every edge, into the last bin: counted there, then moved to the null bin
        counts = np.bincount(np.searchsorted(np.asarray(spec["edges"]), numbers, side="left"),
                             minlength=len(spec["edges"]) + 1)
        counts[-1] -= nulls
        return np.append(counts, nulls).astype("float64"), []
    if spec["kind"] == "text":
        nulls = int(values.isna().sum())
        return np.asarray([len(values) - nulls, nulls], dtype="float64"), []
    labels, counts, nulls = _label_counts(values, spec["kind"] == "boolean")
    index = {c: i for i, c in enumerate(spec["categories"])}
    known, unseen = np.zeros(len(index)), {}
    for label, count in zip(labels, counts):
        if label in index:
            known[index[label]] += count
        else:
            unseen[label] = unseen.get(label, 0) + int(count)
    top = sorted(unseen.items(), key=lambda item: -item[1])[:10]
    counts = np.concatenate([known, [sum(unseen.values()), nulls]]).astype("float64")
    return counts, [{"value": str(k), "rows": v} for k, v in top]


def _label_counts(values: pd.Series, boolean: bool) -> tuple[list[str], np.ndarray, int]:
    """Each distinct value's label as the reference writes it (:func:`as_text`), its count, and the nulls.

    A categorical column (as :meth:`CaptureStore.columns` reads text) is counted from its codes and only
    its categories are converted; an object column is converted value by value, since values that hash
    alike (1, 1.0, True) may still be different labels.
    """
    if values.dtype == object:
        values = as_text(values, boolean)
    elif not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("category")
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories))
        labels = as_text(pd.Series(values.cat.categories, dtype=object), boolean).tolist()
        return labels, counts, int((codes < 0).sum())
    present = values.dropna()
    counts = present.value_counts(sort=False)
    return [str(v) for v in counts.index], counts.to_numpy(), int(len(values) - len(present))


def feature_drift(spec: dict, values: pd.Series, alpha: float) -> dict:
    """One feature's tests, thresholds and verdict on a window (values as read from the capture)."""
    live, unseen = live_counts(spec, values)
    rows = int(live.sum())
    ref = stats.reference_counts(spec)
    thresholds = stats.calibrate(spec, rows, alpha)
    values_by_test = stats.statistics(spec, live, ref)
    tests = []
    for name in spec["tests"]:
        value = float(values_by_test[name])
        finite = math.isfinite(value)
        tests.append({"test": name, "value": value if finite else None, "threshold": thresholds[name],
                      "drifted": bool(finite and value > thresholds[name])})
    return {
        "name": spec["name"], "kind": spec["kind"], "rows": rows,
        "null_rate": float(live[-1] / rows) if rows else None,
        "reference_null_rate": spec["nulls"] / spec["rows"] if spec["rows"] else None,
        "unseen": unseen, "tests": tests, "drifted": any(t["drifted"] for t in tests),
        "shares": _shares(spec, live, ref) if spec["kind"] != "text" else None,
    }


def _shares(spec: dict, live: np.ndarray, ref: np.ndarray) -> dict:
    """Reference and live shares over the PSI bins (for the plots), nulls last."""
    groups = np.asarray(spec["psi_groups"] + [max(spec["psi_groups"]) + 1])
    size = int(groups.max()) + 1
    lg, rg = stats._group(live, groups, size), stats._group(ref, groups, size)
    return {"bins": _bin_labels(spec, groups), "reference": (rg / max(rg.sum(), 1)).tolist(),
            "live": (lg / max(lg.sum(), 1)).tolist()}


def _bin_labels(spec: dict, groups: np.ndarray) -> list[str]:
    if spec["kind"] != "numeric":
        return [*spec["categories"], "(unseen)", "(null)"]
    edges, labels = spec["edges"], []
    for g in range(int(groups[:-1].max()) + 1):
        members = np.flatnonzero(groups[:-1] == g)
        low = edges[members[0] - 1] if members[0] > 0 else None
        high = edges[members[-1]] if members[-1] < len(edges) else None
        labels.append(_interval(low, high))
    return [*labels, "(null)"]


def _interval(low, high) -> str:
    if low is None and high is None:
        return "all"
    if low is None:
        return f"≤ {high:.4g}"
    if high is None:
        return f"> {low:.4g}"
    return f"({low:.4g}, {high:.4g}]"


def drift(reference: dict, frame: pd.DataFrame, *, alpha: float | None = None) -> dict:
    """Drift of ``frame`` (captured rows: one column per input column, and ``prediction``).

    Returns ``{"rows", "status", "features": [per feature], "prediction": {...} | None,
    "verdict": {"drift", "status", "reasons"}}``; ``status`` is "ok" or "insufficient data".
    """
    alpha = reference["alpha"] if alpha is None else alpha
    rows, minimum = len(frame), reference.get("min_rows", 30)
    if rows < minimum:
        reason = f"only {rows} rows in the window; drift needs at least {minimum}"
        return {"rows": rows, "status": "insufficient data", "features": [], "prediction": None,
                "verdict": {"drift": False, "status": "insufficient data", "reasons": [reason]}}
    def one(spec: dict) -> dict:
        if spec["name"] not in frame.columns:  # never captured: every row is null
            return feature_drift(spec, pd.Series(np.full(rows, np.nan)), alpha)
        return feature_drift(spec, frame[spec["name"]], alpha)

    # numpy's binning and sorting release the GIL: on a large window, features go faster two at a time
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        features = list(pool.map(one, reference["features"]))
    features.sort(key=lambda f: (not f["drifted"], -_severity(f)))
    prediction = _prediction(reference, frame, alpha, minimum)
    return {"rows": rows, "status": "ok", "features": features, "prediction": prediction,
            "verdict": verdict(features, reference.get("top_features", []), prediction)}


def _severity(feature: dict) -> float:
    """How far past its threshold a feature's worst test is (ratio), for ordering."""
    ratios = [t["value"] / t["threshold"] for t in feature["tests"]
              if t["value"] is not None and t["threshold"] and math.isfinite(t["threshold"])]
    return max(ratios, default=0.0)


def _prediction(reference: dict, frame: pd.DataFrame, alpha: float, minimum: int) -> dict | None:
    spec = reference.get("prediction")
    if spec is None or "prediction" not in frame.columns:
        return None
    values = frame["prediction"].dropna()
    if len(values) < minimum:
        return {"drifted": False, "status": "insufficient data", "rows": int(len(values)), "tests": []}
    result = feature_drift(spec, values, alpha)
    result["status"], result["source"] = "ok", spec.get("source")
    if spec["kind"] == "classes":
        shares = result["shares"]
        result["class_shares"] = {"classes": spec["categories"], "reference": shares["reference"][:len(spec["categories"])],
                                  "live": shares["live"][:len(spec["categories"])]}
    return result


def verdict(features: list[dict], top: list[str], prediction: dict | None) -> dict:
    """Drift when at least half of the monitored features drift, or any top-3 SHAP feature does."""
    drifted = [f["name"] for f in features if f["drifted"]]
    reasons = []
    if features and len(drifted) * 2 >= len(features) and drifted:
        reasons.append(f"{len(drifted)} of {len(features)} features drifted: {', '.join(drifted)}")
    for name in top:
        if name in drifted:
            reasons.append(f"{name}, one of the model's top-3 SHAP features, drifted")
    notes = []
    if drifted and not reasons:
        notes.append(f"{len(drifted)} of {len(features)} features drifted ({', '.join(drifted)}): fewer than half, "
                     "and none of the top-3 SHAP features")
    if prediction and prediction.get("drifted"):
        notes.append("the prediction distribution drifted")
    return {"drift": bool(reasons), "status": "ok", "reasons": reasons, "notes": notes, "drifted_features": drifted}
