"""Outcomes analysis: calibration, and benchmarks on the same evaluation rows.

Benchmarks are a dummy model (the training prior or mean), a simple baseline trained here on the
training rows (logistic or ridge regression over imputed, scaled numbers and one-hot categories), and,
when one exists, the previous version of the model run on *this* version's evaluation rows. Each is
scored at the same decision settings; the differences come with paired bootstrap intervals.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ._evaluate import bootstrap, paired_differences, point_metrics

CALIBRATION_BINS = 10
KEY_METRICS = {"binary": ("roc_auc", "ks", "brier", "recall", "precision"), "multiclass": ("accuracy", "f1", "log_loss", "brier"),
               "regression": ("mae", "rmse", "r2")}


# -- calibration ------------------------------------------------------------------------------------------
def calibration(y_true, score, positive, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability of P(positive): rows cut into score deciles, mean score against the observed rate in each."""
    y = (np.asarray(y_true) == positive).astype(float)
    score = np.asarray(score, dtype="float64")
    edges = np.unique(np.quantile(score, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in range(max(len(edges) - 1, 1)):
        mask = which == b
        if mask.any():
            rows.append({"bin": b + 1, "count": int(mask.sum()), "low": float(score[mask].min()), "high": float(score[mask].max()),
                         "mean_score": float(score[mask].mean()), "observed_rate": float(y[mask].mean())})
    ece = sum(r["count"] * abs(r["mean_score"] - r["observed_rate"]) for r in rows) / max(len(y), 1)
    return {"kind": "classifier", "positive_class": positive, "bins": rows, "expected_calibration_error": float(ece)}


def regression_calibration(y_true, predicted, bins: int = CALIBRATION_BINS) -> dict:
    """The regression equivalent: rows cut into deciles of the prediction, mean prediction against mean actual."""
    y, predicted = np.asarray(y_true, dtype="float64"), np.asarray(predicted, dtype="float64")
    frame = pd.DataFrame({"y": y, "p": predicted})
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), min(bins, len(frame)), labels=False)
    rows = [{"bin": int(b) + 1, "count": int(len(g)), "low": float(g["p"].min()), "high": float(g["p"].max()),
             "mean_prediction": float(g["p"].mean()), "mean_actual": float(g["y"].mean())} for b, g in frame.groupby("bin")]
    return {"kind": "regressor", "bins": rows, "mean_bias": float(np.mean(predicted - y))}


# -- benchmarks -------------------------------------------------------------------------------------------
def benchmarks(inputs, y_true, model_output: tuple, decide, *, previous=None) -> list[dict]:
    """The model against a dummy, a simple baseline and the previous version, on the same evaluation rows.

    ``decide(proba, own_labels)`` turns a benchmark's probabilities into labels the way the model's
    were (the card's decision threshold); ``previous`` is the previous version's Package, if any.
    """
    task, classes = inputs.manifest["task"], inputs.manifest.get("classes")
    positive = inputs.positive
    results = []
    for name, kind, describe, make in _candidates(inputs, previous):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predicted, proba = make()
        except Exception as exc:  # noqa: BLE001 - a benchmark that cannot run is reported, not fatal
            results.append({"name": name, "kind": kind, "available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        if proba is not None:
            predicted = decide(proba, predicted)
        results.append(_scored(name, kind, describe, y_true, model_output, (predicted, proba), task, classes, positive))
    return results


def _scored(name, kind, description, y_true, model_output, output, task, classes, positive) -> dict:
    keys = KEY_METRICS[task]
    own = point_metrics(y_true, *output, task, classes, positive)
    bounds = bootstrap(y_true, *output, task, classes, positive, seed=1)
    differences = paired_differences(y_true, model_output, output, task, classes, positive, seed=2)
    return {
        "name": name, "kind": kind, "available": True, "description": description,
        "metrics": [{"name": k, "value": own[k], "ci_low": bounds[k][0], "ci_high": bounds[k][1]} for k in keys],
        "differences": [differences[k] for k in keys],
    }


def _candidates(inputs, previous) -> list[tuple[str, str, str, Any]]:
    task = inputs.manifest["task"]
    found = []
    if inputs.y_train is not None:
        dummy = "the training prior for every row" if task != "regression" else "the training mean for every row"
        found.append(("dummy", "dummy", dummy, lambda: _fit_predict(inputs, _dummy(task))))
        what = "logistic regression" if task != "regression" else "ridge regression"
        found.append((f"baseline ({what})", "baseline",
                      f"{what} on imputed, scaled numeric columns and one-hot categories, trained here on the training rows",
                      lambda: _fit_predict(inputs, _baseline(inputs.manifest["schema"], task))))
    if previous is not None:
        found.append((f"v{previous.version} (previous version)", "previous",
                      f"version {previous.version}'s model, loaded from its package (sha256 checked) and run on these rows",
                      lambda: _previous_output(previous, inputs.test, inputs.manifest)))
    return found


def _dummy(task: str):
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return DummyRegressor(strategy="mean") if task == "regression" else DummyClassifier(strategy="prior")


def _baseline(schema: dict, task: str):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c["name"] for c in schema["columns"] if c["kind"] in ("integer", "number", "boolean")]
    categorical = [c["name"] for c in schema["columns"] if c["kind"] == "category"]
    parts = []
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        parts.append(("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                           OneHotEncoder(handle_unknown="ignore")), categorical))
    if not parts:
        raise ValueError("no numeric or categorical column to fit a baseline on")
    last = Ridge(alpha=1.0) if task == "regression" else LogisticRegression(max_iter=2000)
    return make_pipeline(ColumnTransformer(parts), last)


def _fit_predict(inputs, estimator) -> tuple:
    columns = [c["name"] for c in inputs.manifest["schema"]["columns"]]
    train, test = _numeric_bools(inputs.train[columns]), _numeric_bools(inputs.test[columns])
    estimator.fit(train, np.asarray(inputs.y_train))
    proba = estimator.predict_proba(test) if inputs.manifest["task"] != "regression" else None
    if proba is not None:
        proba = _align(proba, list(estimator.classes_), inputs.manifest["classes"])
    return np.asarray(estimator.predict(test)), proba


def _numeric_bools(frame: pd.DataFrame) -> pd.DataFrame:
    bools = [c for c in frame.columns if pd.api.types.is_bool_dtype(frame[c])]
    return frame.astype({c: "float64" for c in bools}) if bools else frame


def _align(proba: np.ndarray, have: list, want: list) -> np.ndarray:
    """Probability columns in the model's class order (a class missing from the training labels gets 0)."""
    out = np.zeros((len(proba), len(want)))
    for j, label in enumerate(have):
        out[:, want.index(label)] = proba[:, j]
    return out


def _previous_output(previous, test: pd.DataFrame, current: dict) -> tuple:
    from .._runtime import artifacts

    manifest = previous.manifest
    columns = [c["name"] for c in manifest["schema"]["columns"]]
    missing = [c for c in columns if c not in test.columns]
    if missing:
        raise ValueError(f"v{previous.version} takes columns these rows lack: {', '.join(missing[:5])}")
    if manifest["task"] != current["task"] or (manifest.get("classes") and set(map(str, manifest["classes"])) != set(map(str, current["classes"]))):
        raise ValueError(f"v{previous.version} predicts other classes ({manifest.get('classes')}) than this version")
    model = artifacts.load_model(previous.model_dir, manifest.model)
    X = test[columns].to_numpy() if manifest.get("input_kind") == "array" else test[columns]
    proba = None
    if current["task"] != "regression":
        proba = _align(np.asarray(model.predict_proba(X), dtype="float64"), list(manifest["classes"]), current["classes"])
    return np.asarray(model.predict(X)), proba
