"""Validating request instances against the input schema and turning them into the model's frame.

The schema is plain data (written by :func:`deploykit._schema.infer_schema`)::

    {"columns": [{"name": "age", "kind": "integer", "dtype": "int64", "nullable": false,
                  "min": 18, "max": 90, "categories": null, "unknown": null}, ...],
     "max_batch": 1000}

``kind`` is one of integer, number, boolean, category, string. Every problem found is reported with its
row and column; nothing is cast silently (an int column never quietly becomes float).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InputError

MAX_DETAILS = 20


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def _check_value(column: dict, value: Any, categories: frozenset | None) -> str | None:
    """Return a problem sentence for one cell, or None when the value fits the column."""
    if _is_null(value):
        if column["nullable"]:
            return None
        return (
            f"null is not allowed: the column was trained as {column['dtype']} without missing values; "
            "send a value, or retrain with missing values (and an imputer) if nulls are expected"
        )
    kind = column["kind"]
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected an integer, got {_describe(value)}"
        if isinstance(value, float) and not value.is_integer():
            return f"expected an integer, got {_describe(value)} which has a fractional part"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {_describe(value)}"
        if isinstance(value, float) and math.isinf(value):
            return f"expected a finite number, got {value}"
    elif kind == "boolean":
        if not isinstance(value, bool):
            return f"expected true or false, got {_describe(value)}"
    elif kind == "category":
        if categories is not None and value not in categories:
            if isinstance(value, (dict, list)):
                return f"expected one of the trained categories, got {_describe(value)}"
            known = ", ".join(repr(c) for c in column["categories"][:10])
            more = " …" if len(column["categories"]) > 10 else ""
            what = column.get("unknown") or "the model never saw it in training"
            return f"unseen category {value!r} (known: {known}{more}); {what}"
    elif kind == "string":
        if not isinstance(value, str):
            return f"expected a string, got {_describe(value)}"
    return None


class InstanceValidator:
    """Checks parsed request bodies and builds the DataFrame the model was trained on."""

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.columns = schema["columns"]
        self.names = [c["name"] for c in self.columns]
        self._known = set(self.names)
        self.max_batch = int(schema.get("max_batch", 1000))
        self._categories = {
            c["name"]: frozenset(c["categories"]) if c.get("categories") is not None else None
            for c in self.columns
        }

    def instances(self, body: Any) -> list:
        """Return the list under ``"instances"`` or raise a 400/413 :class:`InputError`."""
        if not isinstance(body, dict) or "instances" not in body:
            raise InputError(
                'the request body must be a JSON object like {"instances": [{"column": value, ...}]}',
                status=400,
            )
        rows = body["instances"]
        if not isinstance(rows, list):
            raise InputError('"instances" must be a list of objects, one per row', status=400)
        if not rows:
            raise InputError('"instances" is empty: send at least one row', status=400)
        if len(rows) > self.max_batch:
            raise InputError(
                f"batch of {len(rows)} rows exceeds the limit of {self.max_batch}; "
                "split it into smaller requests",
                status=413,
            )
        return rows

    def columns_of(self, rows: list) -> dict[str, list]:
        """Validate every row; return the values column by column."""
        problems: list[dict] = []
        values: dict[str, list] = {name: [] for name in self.names}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append({"row": i, "column": None, "problem": f"expected an object, got {_describe(row)}"})
                continue
            for name in row.keys() - self._known:
                problems.append({"row": i, "column": name, "problem": "unknown column; the model does not use it"})
            for column in self.columns:
                name = column["name"]
                if name not in row:
                    problems.append({"row": i, "column": name, "problem": "missing column"})
                    continue
                value = row[name]
                problem = _check_value(column, value, self._categories[name])
                if problem:
                    problems.append({"row": i, "column": name, "problem": problem})
                values[name].append(value)
        if problems:
            raise _problems_error(problems)
        return values

    def frame(self, rows: list):
        """Check ``rows`` and build the pandas DataFrame with the training dtypes."""
        return self.build(self.columns_of(rows))

    def build(self, values: dict[str, list]):
        """The DataFrame with the training dtypes, from checked column values."""
        import pandas as pd

        data = {column["name"]: _series(column, values[column["name"]]) for column in self.columns}
        return pd.DataFrame(data, columns=self.names)


def _series(column: dict, values: list):
    import numpy as np
    import pandas as pd

    dtype = column["dtype"]
    if column["kind"] == "category" and dtype == "category":
        return pd.Categorical(values, categories=column["categories"])
    if column["kind"] in ("integer", "number", "boolean"):
        if any(_is_null(v) for v in values):
            if dtype.startswith(("Int", "UInt", "Float", "boolean")):  # pandas nullable dtypes
                return pd.array([None if _is_null(v) else v for v in values], dtype=dtype)
            return np.array([np.nan if _is_null(v) else v for v in values], dtype="float64")
        return pd.array(values, dtype=dtype) if dtype[0].isupper() or dtype == "boolean" else np.asarray(values, dtype=dtype)
    return pd.array([None if _is_null(v) else v for v in values], dtype=dtype)


def _problems_error(problems: list[dict]) -> InputError:
    first = problems[0]
    where = f"row {first['row']}" + (f", column {first['column']!r}" if first["column"] is not None else "")
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''}; see details)" if len(problems) > 1 else ""
    return InputError(f"{where}: {first['problem']}{more}", details=problems[:MAX_DETAILS], status=422)
