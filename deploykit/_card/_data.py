"""The data section: dataset fingerprints, the feature table, label balance, and sensitive features."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, SchemaError

# A numeric sensitive feature with more distinct values than this is cut into quantile bands.
MAX_GROUP_VALUES = 12
MISSING_GROUP = "(missing)"
# Above this share of evaluation rows that are also training rows, the evaluation is not "held-out".
HELD_OUT_MAX_OVERLAP = 0.01


def _row_hashes(X: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(X.reset_index(drop=True), index=False).to_numpy()


def dataset_sha256(X: pd.DataFrame, y: Any = None) -> str:
    """A fingerprint of the rows' values (not their index), the column names and dtypes, and the labels."""
    digest = hashlib.sha256(json.dumps([[str(c), str(X[c].dtype)] for c in X.columns]).encode())
    digest.update(_row_hashes(X).tobytes())
    if y is not None:
        digest.update(_row_hashes(pd.DataFrame({"y": np.asarray(y)})).tobytes())
    return digest.hexdigest()


def overlap_share(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """Share of the evaluation rows whose feature values also occur as a training row."""
    return float(overlap_mask(train, test).mean())


def overlap_mask(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """For each evaluation row, whether a training row has exactly the same values (by row hash)."""
    return np.isin(_row_hashes(test), _row_hashes(train))


def overlap_facts(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    """How far the evaluation rows are unseen: counts, share, and what the evaluation may be called."""
    mask = overlap_mask(train, test)
    share = float(mask.mean()) if len(mask) else 0.0
    return {"overlap_with_training": share, "overlap_rows": int(mask.sum()), "held_out": share <= HELD_OUT_MAX_OVERLAP,
            "overlap_limit": HELD_OUT_MAX_OVERLAP, "label": data_label(share)}


def data_label(share: float) -> str:
    """What the evaluation rows are called in every format: held-out only when at most 1% were seen in training."""
    if share <= HELD_OUT_MAX_OVERLAP:
        return "held-out data"
    return f"evaluation data ({share:.0%} of rows also in training, not held-out)"


def sensitive_summary(sensitive: pd.DataFrame, min_group: int) -> list[dict]:
    """Per sensitive feature: how many groups, how many of them large enough to compare, the largest share."""
    rows = []
    for column in sensitive.columns:
        counts = sensitive[column].value_counts()
        rows.append({"name": str(column), "groups": int(len(counts)), "comparable_groups": int((counts >= min_group).sum()),
                     "largest_group": str(counts.index[0]) if len(counts) else None,
                     "largest_share": float(counts.iloc[0] / counts.sum()) if len(counts) else None})
    return rows


def label_balance(y: Any, task: str) -> dict | None:
    if y is None:
        return None
    values = pd.Series(np.asarray(y))
    if task == "regression":
        described = values.astype("float64").describe()
        return {"mean": float(described["mean"]), "std": float(described["std"]), "min": float(described["min"]),
                "max": float(described["max"])}
    counts = values.value_counts().sort_index()
    return {"counts": {str(k): int(v) for k, v in counts.items()},
            "shares": {str(k): float(v / len(values)) for k, v in counts.items()}}


def feature_table(schema: dict, train: pd.DataFrame, test: pd.DataFrame | None, sensitive: list[str]) -> list[dict]:
    rows = []
    for column in schema["columns"]:
        name = column["name"]
        row = {
            "name": name,
            "kind": column["kind"],
            "dtype": column["dtype"],
            "missing_share": float(train[name].isna().mean()),
            "missing_share_evaluation": float(test[name].isna().mean()) if test is not None else None,
            "min": column.get("min"),
            "max": column.get("max"),
            "categories": column.get("categories"),
            "distinct": int(train[name].nunique()),
            "sensitive": name in sensitive,
        }
        if test is not None and column["kind"] in ("integer", "number") and column.get("min") is not None:
            values = pd.to_numeric(test[name], errors="coerce").dropna()
            outside = (values < column["min"]) | (values > column["max"])
            low, high = np.nanpercentile(pd.to_numeric(train[name], errors="coerce"), [1, 99])
            row["outside_range_share"] = float(outside.mean()) if len(values) else 0.0
            row["tail_share"] = float(((values < low) | (values > high)).mean()) if len(values) else 0.0
            row["tails"] = [float(low), float(high)]
        if test is not None and column.get("categories") is not None:
            unseen = sorted({str(v) for v in test[name].dropna().tolist()} - {str(c) for c in column["categories"]})
            row["unseen_categories"] = unseen
        rows.append(row)
    return rows


def sensitive_frame(spec: Any, X_test: Any, test: pd.DataFrame | None) -> tuple[pd.DataFrame | None, list[str]]:
    """The sensitive attributes as string groups aligned row by row with the evaluation frame.

    ``spec`` is a list of column names of ``X_test`` (model inputs or extra columns), or a Series or
    DataFrame with one value per row of ``X_test``. Returns the frame and notes on how values were grouped.
    """
    if spec is None:
        return None, []
    if test is None:
        raise ConfigError("sensitive_features needs held-out data: pass X_test and y_test to package() as well")
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, (list, tuple)):
        if not isinstance(X_test, pd.DataFrame):
            raise ConfigError("sensitive_features given as column names needs X_test as a DataFrame; "
                              "pass a Series or DataFrame aligned with X_test instead")
        missing = [c for c in spec if c not in X_test.columns]
        if missing:
            raise SchemaError(f"sensitive feature {missing[0]!r} is not a column of X_test (columns: "
                              f"{', '.join(map(str, X_test.columns[:12]))}); pass its values as a Series aligned with X_test",
                              column=str(missing[0]))
        frame = X_test[list(spec)]
    elif isinstance(spec, (pd.Series, pd.DataFrame)):
        frame = spec.to_frame() if isinstance(spec, pd.Series) else spec
        if frame.columns.isnull().any() or any(not isinstance(c, str) for c in frame.columns):
            raise ConfigError("sensitive features need string names: name the Series (s.rename('gender')) or the columns")
    else:
        raise ConfigError(f"sensitive_features must be column names of X_test, or a Series/DataFrame aligned with "
                          f"X_test; got {type(spec).__name__}")
    if len(frame) != len(test):
        raise SchemaError(f"sensitive_features has {len(frame)} rows but X_test has {len(test)}; give one value per row of X_test")
    notes: list[str] = []
    grouped = {str(c): _groups(frame[c], notes) for c in frame.columns}
    return pd.DataFrame(grouped, index=test.index), notes


def _groups(values: pd.Series, notes: list[str]) -> list[str]:
    values = values.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.nunique() > MAX_GROUP_VALUES:
        bands = pd.qcut(values, 4, duplicates="drop")
        notes.append(f"{values.name!r} has {values.nunique()} distinct values, so it was cut into quartile bands")
        labels = [f"{values.name} {interval.left:g}–{interval.right:g}" if not pd.isna(interval) else MISSING_GROUP
                  for interval in bands.tolist()]
        return labels
    return [MISSING_GROUP if pd.isna(v) else str(v) for v in values.tolist()]
