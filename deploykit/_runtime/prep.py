"""A Pipeline's preprocessing replayed in numpy, in float64, from fitted parameters stored as data.

The compiled fast path runs the final estimator in a compiled engine; what comes before it (imputers,
scalers, one-hot and ordinal encoders inside a ColumnTransformer, or the category codes a LightGBM,
XGBoost or HistGradientBoosting model reads natively) runs here. Doing it in numpy keeps float64
throughout: ONNX Runtime has no double-precision imputer, and in float32 the churn pipeline's
probabilities moved by up to 0.019. The plan is written by :mod:`deploykit._compile` when the package is
made, as plain JSON (Python writes floats so that they read back bit for bit), and checked on every test
row with the engine behind it. This module imports numpy only: the edge bundle ships it as it is.

A plan::

    {"blocks": [{"columns": ["age", "income"], "steps": [{"op": "impute", "fill": [40.0, 1.5e4]},
                                                          {"op": "standard", "mean": [...], "scale": [...]}]},
                {"columns": ["plan"], "steps": [{"op": "onehot", "categories": [["a", "b"]], "drop": [null]}]}],
     "after": [], "width": 4}
"""

from __future__ import annotations

import numpy as np


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _read(values: list, numeric: bool) -> np.ndarray:
    if numeric:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array([None if _is_missing(v) else v for v in values], dtype=object)


def _impute(X: np.ndarray, step: dict) -> np.ndarray:
    if X.dtype == object:
        out = X.copy()
        for j, fill in enumerate(step["fill"]):
            column = out[:, j]
            column[[_is_missing(v) for v in column]] = fill
        return out
    return np.where(np.isnan(X), np.asarray(step["fill"], dtype=np.float64), X)


def _standard(X: np.ndarray, step: dict) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if step["mean"] is not None:
        X = X - np.asarray(step["mean"], dtype=np.float64)
    if step["scale"] is not None:
        X = X / np.asarray(step["scale"], dtype=np.float64)
    return X


def _minmax(X: np.ndarray, step: dict) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64) * np.asarray(step["scale"], dtype=np.float64)
    X = X + np.asarray(step["min"], dtype=np.float64)
    return np.clip(X, *step["clip"]) if step.get("clip") else X


def _lookup(categories: list) -> dict:
    return {(None if _is_missing(c) else c): i for i, c in enumerate(categories)}


def _onehot(X: np.ndarray, step: dict) -> np.ndarray:
    blocks = []
    for j, (categories, drop) in enumerate(zip(step["categories"], step["drop"])):
        index = _lookup(categories)
        out = np.zeros((len(X), len(categories)), dtype=np.float64)
        for i, value in enumerate(X[:, j].tolist()):
            k = index.get(None if _is_missing(value) else value)
            if k is not None:  # unknown: all zeros, as handle_unknown="ignore" does
                out[i, k] = 1.0
        blocks.append(np.delete(out, drop, axis=1) if drop is not None else out)
    return np.hstack(blocks) if blocks else np.empty((len(X), 0))


def _codes(X: np.ndarray, step: dict) -> np.ndarray:
    """Category → its position in the trained list (OrdinalEncoder, or a model's native categories)."""
    out = np.empty(X.shape, dtype=np.float64)
    for j, categories in enumerate(step["categories"]):
        if categories is None:  # a numeric column among categorical ones
            out[:, j] = np.asarray(X[:, j], dtype=np.float64)
            continue
        index = _lookup(categories)
        unknown, missing = step.get("unknown", np.nan), step.get("missing", np.nan)
        out[:, j] = [missing if _is_missing(v) else index.get(v, unknown) for v in X[:, j].tolist()]
    return out


_OPS = {"impute": _impute, "standard": _standard, "minmax": _minmax, "onehot": _onehot, "codes": _codes}
_TEXT_OPS = ("impute", "onehot", "codes")  # the ops that take category values as they came


class Preprocessor:
    """Request columns (validated, column name → values) to the float64 matrix the final estimator takes."""

    def __init__(self, plan: dict, kinds: dict[str, str]) -> None:
        self.blocks, self.after, self.width = plan["blocks"], plan.get("after", []), plan["width"]
        self.float32 = bool(plan.get("float32"))
        self.numeric = {name: kind in ("integer", "number", "boolean") for name, kind in kinds.items()}

    def _block(self, columns: dict[str, list], block: dict) -> np.ndarray:
        names = block["columns"]
        textual = any(not self.numeric[name] for name in names)
        X = np.column_stack([_read(columns[name], not textual) for name in names]) if names else None
        for step in block["steps"]:
            X = _OPS[step["op"]](X, step)
        return np.asarray(X, dtype=np.float64)

    def transform(self, columns: dict[str, list]) -> np.ndarray:
        X = np.hstack([self._block(columns, block) for block in self.blocks])
        for step in self.after:
            X = _OPS[step["op"]](X, step)
        if self.float32:  # the estimator compares float32(x) with its thresholds, as scikit-learn's trees do
            X = X.astype(np.float32)
        return np.ascontiguousarray(X, dtype=np.float64)
