"""Inferring the input schema from the training frame, and turning frames into JSON request rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .exceptions import SchemaError

# An object/string column with at most this many distinct values is a category column whose values
# are checked at serve time; with more it is free text.
MAX_CATEGORIES = 200


def as_frame(X: Any, *, what: str = "X_train", columns: list[str] | None = None) -> pd.DataFrame:
    """Return ``X`` as a DataFrame; numpy arrays get columns ``f0..fn`` (or ``columns``)."""
    if isinstance(X, pd.DataFrame):
        frame = X
    elif isinstance(X, pd.Series):
        frame = X.to_frame()
    elif isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        array = np.asarray(X)
        if array.ndim != 2:
            raise SchemaError(f"{what} must be 2-dimensional (rows × columns), got shape {array.shape}")
        frame = pd.DataFrame(array, columns=columns or [f"f{i}" for i in range(array.shape[1])])
    else:
        raise SchemaError(f"{what} must be a pandas DataFrame or a 2-D numpy array, got {type(X).__name__}")
    bad = [c for c in frame.columns if not isinstance(c, str)]
    if bad:
        raise SchemaError(
            f"{what} has column names that are not strings: {bad[:5]}; the served JSON names columns "
            "by string, so rename them (X.columns = X.columns.astype(str)) and refit the model",
        )
    if frame.empty:
        raise SchemaError(f"{what} has no rows; pass the data the model was trained on")
    return frame


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise SchemaError(
            f"column {series.name!r} is {dtype}; JSON requests cannot carry it faithfully yet. "
            "Convert it to numeric features (e.g. days since an epoch) before fitting",
            column=str(series.name),
        )
    values = series.dropna()
    if not all(isinstance(v, str) for v in values.tolist()):
        types = sorted({type(v).__name__ for v in values.tolist()})
        raise SchemaError(
            f"column {series.name!r} mixes value types {types}; give it one type "
            "(e.g. X[col] = X[col].astype(str)) and refit",
            column=str(series.name),
        )
    return "category" if values.nunique() <= MAX_CATEGORIES else "string"


def infer_column(series: pd.Series) -> dict:
    kind = _kind(series)
    column: dict[str, Any] = {
        "name": str(series.name),
        "kind": kind,
        "dtype": str(series.dtype),
        "nullable": bool(series.isna().any()),
        "min": None,
        "max": None,
        "categories": None,
        "unknown": None,
    }
    if kind in ("integer", "number") and series.notna().any():
        column["min"], column["max"] = _python(series.min()), _python(series.max())
    if kind == "category":
        if isinstance(series.dtype, pd.CategoricalDtype):
            column["categories"] = [_python(c) for c in series.cat.categories]
        else:
            column["categories"] = sorted(series.dropna().unique().tolist())
    return column


def infer_schema(frame: pd.DataFrame, *, max_batch: int = 1000) -> dict:
    """The serve-time contract of one row: column names and order, dtypes, nulls, categories, ranges."""
    return {"columns": [infer_column(frame[name]) for name in frame.columns], "max_batch": max_batch}


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: numpy scalars become Python values, missing values become None."""
    out = []
    columns = list(frame.columns)
    for row in frame.astype(object).itertuples(index=False, name=None):
        out.append({c: (None if _missing(v) else _python(v)) for c, v in zip(columns, row)})
    return out


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def valid_indices(schema: dict, rows: list[dict]) -> list[int]:
    """Indices of the JSON rows that pass the serving schema (test data may hold unseen categories)."""
    from ._runtime.errors import InputError
    from ._runtime.schema import InstanceValidator

    validator = InstanceValidator(schema)
    valid = []
    for i, row in enumerate(rows):
        try:
            validator.columns_of([row])
        except InputError:
            continue
        valid.append(i)
    return valid
