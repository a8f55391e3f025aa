"""Inferring the input schema from the training frame, and turning frames into JSON request rows.

A column of strings is either a category (a closed set of values, checked at serve time: a value not
seen in training is a 422) or free text (any string). What the model's pipeline does with the column
decides first (a text vectorizer means text, an encoder means a category), then the values (many
distinct values, or long values of several words, mean text). ``package(..., schema={"review": "text"})``
overrides both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .exceptions import SchemaError

# A string column with more distinct values than this is free text, whatever else it looks like.
MAX_CATEGORIES = 200
# Below MAX_CATEGORIES, values this long on average (characters, or words) that mostly differ are text.
TEXT_CHARACTERS, TEXT_WORDS, TEXT_DISTINCT_SHARE = 40, 4, 0.5
KINDS = ("text", "category")  # what schema={column: kind} may say
_VECTORIZERS = ("CountVectorizer", "TfidfVectorizer", "HashingVectorizer")
_ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")


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


def _kind(series: pd.Series, hint: tuple[str, str] | None = None) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or (hint and hint[0] == "category"):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
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
    if hint is not None:
        return "string" if hint[0] == "text" else "category"
    return "string" if looks_like_text(values) else "category"


def looks_like_text(values: pd.Series) -> bool:
    """Free text rather than categories: many distinct values, or long ones of several words that
    mostly differ from each other."""
    distinct = values.nunique()
    if distinct > MAX_CATEGORIES:
        return True
    if not len(values):
        return False
    long = values.str.len().mean() >= TEXT_CHARACTERS or values.str.split().str.len().mean() >= TEXT_WORDS
    return bool(long and distinct / len(values) > TEXT_DISTINCT_SHARE)


def infer_column(series: pd.Series, hint: tuple[str, str] | None = None) -> dict:
    """One column's entry; ``hint`` is (``"text"`` or ``"category"``, why) for a column of strings."""
    kind = _kind(series, hint)
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
    if kind in ("category", "string") and not isinstance(series.dtype, pd.CategoricalDtype):
        column["inferred"] = hint[1] if hint else _values_reason(series.dropna(), kind)  # values: | pipeline: | schema:
    return column


def _values_reason(values: pd.Series, kind: str) -> str:
    distinct = values.nunique()
    if kind == "string":
        return f"values: {distinct} distinct training values, long or rarely repeated"
    return f"values: {distinct} distinct training values, short and repeated"


def infer_schema(frame: pd.DataFrame, *, max_batch: int = 1000, hints: dict | None = None) -> dict:
    """The serve-time contract of one row: column names and order, dtypes, nulls, categories, ranges.

    ``hints`` maps string columns to (``"text"`` or ``"category"``, why): see :func:`string_kinds`.
    """
    hints = hints or {}
    return {"columns": [infer_column(frame[name], hints.get(name)) for name in frame.columns], "max_batch": max_batch}


def string_kinds(model: Any, frame: pd.DataFrame, overrides: dict | None) -> dict[str, tuple[str, str]]:
    """For string columns: text or category, and why. The user's ``overrides`` first, then what the
    pipeline does with the column; columns neither decides are left to their values."""
    overrides = dict(overrides or {})
    _check_overrides(overrides, frame)
    hints = {name: (kind, f"schema: {kind}") for name, kind in overrides.items()}
    from ._capture import _column_transformers

    for transformer, columns in _column_transformers(model):
        step = _first_step(transformer)
        name = type(step).__name__
        if name in _VECTORIZERS or hasattr(step, "build_analyzer"):
            kind = "text"
        elif name in _ENCODERS:
            kind = "category"
        else:
            continue
        for column in columns:
            hints.setdefault(column, (kind, f"pipeline: its {name} reads the column"))
    return {name: hint for name, hint in hints.items() if name in frame.columns}


def _first_step(transformer: Any) -> Any:
    """The step that reads the raw column (a vectorizer is first; an encoder may follow an imputer)."""
    steps = [s for _, s in transformer.steps] if hasattr(transformer, "steps") else [transformer]
    readers = [s for s in steps if type(s).__name__ in _VECTORIZERS + _ENCODERS or hasattr(s, "build_analyzer")]
    return readers[0] if readers else steps[0]


def _check_overrides(overrides: dict, frame: pd.DataFrame) -> None:
    for name, kind in overrides.items():
        if name not in frame.columns:
            raise SchemaError(f"schema= names column {name!r}, which the model does not use; its columns are "
                              f"{list(frame.columns)[:10]}", column=str(name))
        if kind not in KINDS:
            raise SchemaError(f"schema={{{name!r}: {kind!r}}}: a column's kind is 'text' (free text: any string) or "
                              "'category' (only the values seen in training)", column=str(name))
        series = frame[name]
        if kind == "text" and not (series.dtype == object or pd.api.types.is_string_dtype(series.dtype)):
            raise SchemaError(f"schema={{{name!r}: 'text'}} but column {name!r} is {series.dtype}, not strings",
                              column=str(name))
        if kind == "category" and pd.api.types.is_float_dtype(series.dtype):
            raise SchemaError(f"schema={{{name!r}: 'category'}} but column {name!r} is {series.dtype}; round it to "
                              "integers or map it to strings first", column=str(name))


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


def valid_indices(schema: dict, rows: list[dict], limits: dict | None = None) -> list[int]:
    """Indices of the JSON rows that pass the serving schema (test data may hold unseen categories)."""
    from ._runtime.errors import InputError

    validator = _validator(schema, limits)
    valid = []
    for i, row in enumerate(rows):
        try:
            validator.columns_of([row])
        except InputError:
            continue
        valid.append(i)
    return valid


def _validator(schema: dict, limits: dict | None):
    from ._runtime.limits import Limits
    from ._runtime.schema import InstanceValidator

    return InstanceValidator(schema, Limits.of(limits) if limits else None)


def none_fit(schema: dict, rows: list[dict], limits: dict | None = None, what: str = "test data") -> SchemaError:
    """The error for data of which no row fits the schema, naming the column that refuses the most rows."""
    from collections import Counter

    from ._runtime.errors import InputError

    validator, refused, first = _validator(schema, limits), Counter(), {}
    for i, row in enumerate(rows):
        try:
            validator.columns_of([row])
        except InputError as exc:
            for detail in exc.details:
                refused[detail["column"]] += 1
                first.setdefault(detail["column"], (i, detail["problem"]))
    if not refused:
        return SchemaError(f"the {what} has no rows to replay")
    name, count = refused.most_common(1)[0]
    row, problem = first[name]
    column = next((c for c in schema["columns"] if c["name"] == name), {})
    if str(column.get("inferred", "")).startswith("values:") and column.get("kind") == "category":
        hint = (f"Column {name!r} was taken for a category from its training values ({column['inferred'][8:]}); "
                f"if it is free text, pass schema={{{name!r}: 'text'}}")
    else:
        hint = "Give the test data the columns, types and values the model was trained on"
    return SchemaError(
        f"none of the {len(rows)} rows of the {what} fits the input schema inferred from X_train, so the package "
        f"cannot be checked: column {name!r} refuses {count} of them (row {row}: {problem}). {hint}",
        column=name)
