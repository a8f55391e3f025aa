"""The reference fingerprint a package keeps for monitoring: per feature, what drift tests need.

Made at packaging from the training frame, it is plain JSON (a few tens of KB for 20 features) and
never holds rows. Per feature (the schema's kinds: integer and number are numeric; category and
boolean categorical; string is free text, watched for nulls only)::

    numeric      {"name", "kind": "numeric", "rows", "nulls", "edges": [...], "counts": [...],
                  "psi_groups": [...], "summary": {"mean", "std", "quantiles"}, "tests": ["psi", "ks", "null_rate"]}
    categorical  {"name", "kind": "categorical" | "boolean", "rows", "nulls", "categories": [...], "counts": [...],
                  "psi_groups": [...], "tests": ["psi", "chi2", "null_rate"]}
    text         {"name", "kind": "text", "rows", "nulls", "tests": ["null_rate"]}

``edges`` are the fine bins of a numeric feature: bin ``i`` holds values in ``(edges[i-1], edges[i]]``
(the reference's distinct values when it has at most ``FINE_BINS``, else its 1st..99th percentiles);
``counts`` the reference's non-null values per bin; ``psi_groups`` maps fine bins to PSI's decile bins
(and categories to themselves, plus one "unseen" bin). ``prediction`` is the same record for the
model's outputs (``kind`` "classes" for a classifier's labels, numeric for a regressor's values);
``thresholds`` holds each test's calibrated threshold at a few window sizes, for the card.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import stats

FORMAT = 1
FINE_BINS = 100
PSI_BINS = 10
DEFAULT_ALPHA = 0.01
MIN_ROWS = 30
CARD_SIZES = (30, 100, 600, 1000, 10000)
MAX_GROUP_VALUES = 12  # as the card: a numeric sensitive feature with more values is cut into quartiles


def make_reference(schema: dict, X_train: pd.DataFrame, *, predictions: Any = None, task: str | None = None,
                   classes: list | None = None, top_features: list[str] | None = None,
                   sensitive_features: list[str] | None = None, name: str | None = None,
                   version: str | None = None, alpha: float = DEFAULT_ALPHA,
                   prediction_source: str = "held-out predictions") -> dict:
    """The JSON-serialisable reference fingerprint of a package.

    Parameters
    ----------
    schema : dict
        The package's input schema (``manifest["schema"]``).
    X_train : DataFrame
        The training frame: the reference distribution of every input column.
    predictions : array-like, optional
        The model's outputs on held-out rows (else on the training rows): labels for a classifier,
        values for a regressor. Without them, prediction drift is not monitored.
    task, classes : optional
        ``manifest["task"]`` and ``manifest["classes"]``.
    top_features : list of str, optional
        The model's most important input columns (see :func:`top_shap_features`); any of them drifting
        makes the verdict "drift".
    sensitive_features : list of str, optional
        Input columns to report live performance by group for.
    alpha : float
        Largest share of windows from the reference population in which a feature may alarm.

    Examples
    --------
    >>> ref = make_reference(pkg.schema, X_train, predictions=model.predict(X_test), task="binary",
    ...                      classes=[0, 1], top_features=["tenure_months"])   # doctest: +SKIP
    >>> ref["features"][0]["tests"]                                          # doctest: +SKIP
    ['psi', 'ks', 'null_rate']
    """
    features = [feature_spec(column, X_train[column["name"]]) for column in schema["columns"]]
    reference = {
        "format": FORMAT,
        "kind": "deploykit-monitor-reference",
        "name": name,
        "version": None if version is None else str(version),
        "task": task,
        "classes": [_label(c) for c in classes] if classes is not None else None,
        "rows": int(len(X_train)),
        "source": "training data",
        "alpha": float(alpha),
        "min_rows": MIN_ROWS,
        "replicates": stats.REPLICATES,
        "features": features,
        "prediction": _prediction_spec(predictions, task, classes, prediction_source),
        "top_features": [f for f in (top_features or []) if f in X_train.columns][:3],
        "sensitive": [_sensitive(f, X_train[f]) for f in (sensitive_features or []) if f in X_train.columns],
    }
    reference["thresholds"] = {str(n): thresholds(reference, n) for n in CARD_SIZES}
    return reference


def thresholds(reference: dict, rows: int) -> dict:
    """``{feature: {test: threshold}}`` (and ``"(prediction)"``) for a window of ``rows`` rows."""
    alpha = reference["alpha"]
    out = {f["name"]: stats.calibrate(f, rows, alpha) for f in reference["features"] if f["tests"]}
    if reference.get("prediction"):
        out["(prediction)"] = stats.calibrate(reference["prediction"], rows, alpha)
    return out


def top_shap_features(card: dict | None, k: int = 3) -> list[str]:
    """The ``k`` input columns with the largest mean |SHAP| in a card's explainability ranking
    (``card["explainability"]["ranking"]``, made by ``deploykit/_card/_importance.py``)."""
    ranking = ((card or {}).get("explainability") or {}).get("ranking") or []
    return [entry["feature"] for entry in ranking[:k]]


# -- one feature ---------------------------------------------------------------------------------------
def feature_spec(column: dict, values: pd.Series) -> dict:
    kind = column["kind"]
    if kind in ("integer", "number"):
        return numeric_spec(column["name"], values)
    if kind in ("category", "boolean"):
        categories = ["False", "True"] if kind == "boolean" else _categories(column, values)
        return categorical_spec(column["name"], as_text(values, kind == "boolean"), categories, kind)
    nulls = int(values.isna().sum())
    return {"name": column["name"], "kind": "text", "rows": int(len(values)), "nulls": nulls, "tests": ["null_rate"]}


def numeric_spec(name: str, values: Any) -> dict:
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").astype("float64").to_numpy()
    present = numbers[~np.isnan(numbers)]
    distinct = np.unique(present)
    if len(distinct) <= FINE_BINS:
        edges = distinct[:-1]
    else:
        edges = np.unique(np.quantile(present, np.linspace(0.01, 0.99, FINE_BINS - 1)))
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    tests = ["psi", "ks", "null_rate"] if len(edges) else ["psi", "null_rate"]
    return {
        "name": name, "kind": "numeric", "rows": int(len(numbers)), "nulls": int(len(numbers) - len(present)),
        "edges": edges.tolist(), "counts": counts.tolist(), "psi_groups": _deciles(counts),
        "summary": _summary(present), "tests": tests if len(present) else ["null_rate"],
    }


def categorical_spec(name: str, values: pd.Series, categories: list[str], kind: str = "categorical") -> dict:
    present = values.dropna()
    counts = present.value_counts()
    return {
        "name": name, "kind": "boolean" if kind == "boolean" else "categorical", "rows": int(len(values)),
        "nulls": int(len(values) - len(present)), "categories": categories,
        "counts": [int(counts.get(c, 0)) for c in categories],
        "psi_groups": list(range(len(categories) + 1)),  # each category, and "unseen"
        "tests": ["psi", "chi2", "null_rate"],
    }


def as_text(values: Any, boolean: bool = False) -> pd.Series:
    """Categorical values as strings, nulls kept null; booleans (True, 1, "true") as "True"/"False"."""
    series = pd.Series(values, dtype=object)
    if boolean:
        # True == 1 == 1.0 as dict keys, so the booleans cover the numbers too
        truth = {True: "True", False: "False", "1": "True", "0": "False",
                 "true": "True", "false": "False", "True": "True", "False": "False"}
        return series.map(lambda v: None if _null(v) else truth.get(v, str(v)))
    return series.map(lambda v: None if _null(v) else _label(v))


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT


def _label(value: Any) -> str:
    """A label as text the same way on both sides: 1 and 1.0 are "1"."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _categories(column: dict, values: pd.Series) -> list[str]:
    if column.get("categories") is not None:
        return [_label(c) for c in column["categories"]]
    return [_label(c) for c in values.dropna().value_counts().index[:200]]


def _deciles(counts: np.ndarray) -> list[int]:
    """Fine bin -> PSI bin: consecutive fine bins share a PSI bin until the cumulative share passes a decile."""
    total = counts.sum()
    if total == 0:
        return [0] * len(counts)
    ends = np.cumsum(counts) / total
    groups = np.searchsorted(np.arange(1, PSI_BINS) / PSI_BINS, ends - 1e-9, side="left")
    return np.unique(groups, return_inverse=True)[1].astype(int).tolist()


def _summary(present: np.ndarray) -> dict:
    if not len(present):
        return {"mean": None, "std": None, "quantiles": {}}
    points = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    return {"mean": float(present.mean()), "std": float(present.std()),
            "quantiles": {str(p): float(q) for p, q in zip(points, np.quantile(present, points))}}


def _prediction_spec(predictions: Any, task: str | None, classes: list | None, source: str) -> dict | None:
    if predictions is None:
        return None
    values = np.asarray(predictions).ravel()
    if task == "regression" or classes is None:
        spec = numeric_spec("(prediction)", values)
        spec["tests"] = [t for t in spec["tests"] if t != "null_rate"]
    else:
        labels = [_label(c) for c in classes]
        spec = categorical_spec("(prediction)", as_text(values), labels)
        spec["kind"], spec["tests"] = "classes", ["psi", "chi2"]
    spec["source"] = source
    return spec


def _sensitive(name: str, values: pd.Series) -> dict:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > MAX_GROUP_VALUES:
        edges = np.unique(np.nanquantile(values.astype("float64"), [0.25, 0.5, 0.75])).tolist()
        return {"name": name, "grouping": "quartiles", "edges": edges}
    return {"name": name, "grouping": "values"}
