"""Validating request instances against the input schema and turning them into the model's frame.

The schema is plain data (written by :func:`deploykit._schema.infer_schema`)::

    {"columns": [{"name": "age", "kind": "integer", "dtype": "int64", "nullable": false,
                  "min": 18, "max": 90, "categories": null, "unknown": null}, ...],
     "max_batch": 1000}

``kind`` is one of integer, number, boolean, category, string (free text). Every problem found is
reported with its row and column; nothing is cast silently (an int column never quietly becomes
float). The checks cannot raise anything but :class:`InputError`: any JSON value, of any size or
depth, in any column, is a 4xx naming it, and a number the column's dtype cannot hold is one too.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

from .errors import ECHO_LIMIT, MAX_DETAILS, InputError, clip
from .limits import Limits

EXACT_FLOAT = 2**53  # above this a float no longer says which integer the client meant


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _echo(value: Any) -> str:
    """A scalar as an error repeats it: about 80 characters at most, whatever its size."""
    if isinstance(value, str):
        return repr(value) if len(value) <= ECHO_LIMIT else f"{value[:ECHO_LIMIT]!r}… ({len(value):,} characters)"
    try:
        return clip(repr(value))
    except ValueError:  # an integer too long to print
        return "a very large integer"


def _describe(value: Any) -> str:
    """The value and its type, never a container's contents."""
    if isinstance(value, dict):
        return f"an object with {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"{_echo(value)} ({type(value).__name__})"


def nesting(value: Any, limit: int) -> int:
    """How deeply ``value`` nests containers, counting no further than ``limit + 1`` (no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def value_range(column: dict) -> tuple[int, int] | tuple[float, float]:
    """The smallest and largest value an integer or number column's dtype can hold."""
    import numpy as np

    dtype = column["dtype"].lower()
    if column["kind"] == "integer":
        info = np.iinfo(np.dtype(dtype) if dtype in np.sctypeDict else np.int64)
        return int(info.min), int(info.max)
    high = float(np.finfo(np.dtype(dtype) if dtype in np.sctypeDict else np.float64).max)
    return -high, high


class _Column:
    """One column's check, compiled from its schema entry once: ``problem(value)`` is None or a sentence."""

    def __init__(self, column: dict, limits: Limits) -> None:
        self.column, self.limits = column, limits
        kind = column["kind"]
        if kind in ("integer", "number"):
            self.low, self.high = value_range(column)
            self.what = f"the range of {column['dtype']}"
            self.inclusive = kind == "integer"  # orjson reads a literal past the largest float as that float
            if column.get("accepts"):  # found when packaging: the model fails or overflows beyond it
                self.low, self.high = column["accepts"]
                self.what, self.inclusive = "the range this model takes (found when the package was made)", True
        categories = column.get("categories")
        self.categories = frozenset(categories) if categories is not None else None
        self.category_type = _category_type(categories or [])
        self.problem: Callable[[Any], str | None] = {
            "integer": self._integer, "number": self._number, "boolean": self._boolean,
            "category": self._category, "string": self._string,
        }[kind]

    def all_clean(self, values: tuple) -> bool:
        """True when no value of the column has a problem, decided for the whole column at once; False when
        one may (then :meth:`verdict` words it, cell by cell). A null, a non-finite number, a float where an
        integer or a category is expected: False, and the cell-by-cell check decides."""
        types = set(map(type, values))
        kind = self.column["kind"]
        if kind == "integer":
            return types == {int} and self._inside(min(values), max(values))
        if kind == "number":  # isfinite refuses NaN, inf, and (OverflowError) an int past any float
            return types <= {int, float} and all(map(math.isfinite, values)) and self._inside(min(values), max(values))
        if kind == "boolean":
            return types == {bool}
        if kind == "category":
            if self.categories is None or type(None) in types or float in types:
                return False
            wanted = self.category_type
            return (wanted is None or types <= set(wanted[0])) and set(values) <= self.categories
        return types == {str} and max(map(len, values)) <= self.limits.max_string

    def _inside(self, low: Any, high: Any) -> bool:
        if self.inclusive:
            return self.low <= low and high <= self.high
        return self.low < low and high < self.high

    def verdict(self, value: Any) -> str | None:
        """The problem with one cell, or None: the one rule behind every check of a cell (a request's
        rows, batch scoring's row-wise and columnar checks), so they all say the same words."""
        return self.null_problem() if _is_null(value) else self.problem(value)

    def null_problem(self) -> str | None:
        if self.column["nullable"]:
            return None
        return (f"null is not allowed: the column was trained as {self.column['dtype']} without missing values; "
                "send a value, or retrain with missing values (and an imputer) if nulls are expected")

    def _range(self) -> str:
        return f"{self.low:.4g} to {self.high:.4g}" if isinstance(self.low, float) else f"{self.low} to {self.high}"

    def _outside(self, value: Any) -> str | None:
        inside = self.low <= value <= self.high if self.inclusive else self.low < value < self.high
        if inside:
            return None
        return f"{_describe(value)} is outside {self._range()}{'' if self.inclusive else ' (exclusive)'}, {self.what}"

    def _integer(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected an integer, got {_describe(value)}"
        if isinstance(value, float):
            if math.isinf(value):
                return f"expected a finite integer, got {value}"
            if not value.is_integer():
                return f"expected an integer, got {_describe(value)} which has a fractional part"
        if problem := self._outside(value):
            return problem
        if isinstance(value, float) and abs(value) >= EXACT_FLOAT:
            return (f"{value!r} is a float too large to stand for one exact integer; send it as an integer "
                    f"literal (from {self._range()})")
        return None

    def _number(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {_describe(value)}"
        if isinstance(value, float) and math.isinf(value):
            return f"expected a finite number, got {value}"
        return self._outside(value)

    def _boolean(self, value: Any) -> str | None:
        if not isinstance(value, bool):
            return f"expected true or false, got {_describe(value)}"
        return None

    def _long(self, value: str) -> str | None:
        if len(value) > self.limits.max_string:
            return (f"a string of {len(value):,} characters is over the limit of {self.limits.max_string:,}; "
                    f"{self.limits.raise_with('max_string', len(value))} if values this long are expected")
        return None

    def _category(self, value: Any) -> str | None:
        if isinstance(value, (dict, list)):
            return f"expected one of the trained categories, got {_describe(value)}"
        wanted = self.category_type
        if wanted is not None and not _is_type(value, wanted):
            return f"expected {wanted[1]} (one of the trained categories), got {_describe(value)}"
        if self.categories is not None and value not in self.categories:
            if isinstance(value, str) and (problem := self._long(value)):
                return problem
            known = ", ".join(clip(repr(c), 40) for c in self.column["categories"][:10])
            more = " …" if len(self.column["categories"]) > 10 else ""
            what = self.column.get("unknown") or "the model never saw it in training"
            if str(self.column.get("inferred", "")).startswith("values:") and isinstance(value, str):
                what += (f"; the column was taken for a category from its training values: if it is free text, "
                         f"package with schema={{{self.column['name']!r}: 'text'}}")
            return f"unseen category {_echo(value)} (known: {known}{more}); {what}"
        return None

    def _string(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected a string, got {_describe(value)}"
        return self._long(value)


def _category_type(categories: list) -> tuple[tuple, str] | None:
    """The JSON type the categories share, as (Python types, name), or None if they mix types."""
    if all(isinstance(c, str) for c in categories):
        return (str,), "a string"
    if all(isinstance(c, bool) for c in categories):
        return (bool,), "true or false"
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in categories):
        return (int, float), "a number"
    return None


def _is_type(value: Any, wanted: tuple[tuple, str]) -> bool:
    if isinstance(value, bool):
        return bool in wanted[0]
    return isinstance(value, wanted[0])


class InstanceValidator:
    """Checks parsed request bodies and builds the DataFrame the model was trained on."""

    def __init__(self, schema: dict, limits: Limits | None = None) -> None:
        self.schema = schema
        self.limits = limits or Limits(max_batch=int(schema.get("max_batch", Limits.max_batch)))
        self.columns = schema["columns"]
        self.names = [c["name"] for c in self.columns]
        self._known = set(self.names)
        self.max_batch = self.limits.max_batch
        self._checks = [(c["name"], _Column(c, self.limits)) for c in self.columns]
        self._getter = operator.itemgetter(*self.names) if self.names else None  # a tuple per row; one name: the value

    @property
    def checks(self) -> list[tuple[str, _Column]]:
        """Each column's compiled check, in schema order (batch scoring applies them a column at a time)."""
        return self._checks

    def instances(self, body: Any) -> list:
        """Return the list under ``"instances"`` or raise a 400/413 :class:`InputError`."""
        if not isinstance(body, dict) or "instances" not in body:
            self._refuse_deep(body)
            raise InputError(
                'the request body must be a JSON object like {"instances": [{"column": value, ...}]}, '
                f"got {_describe(body)}", status=400)
        extra = sorted(body.keys() - {"instances"})
        if extra:
            raise InputError(f"unknown key {clip(repr(extra[0]))} in the request body; it holds only \"instances\"",
                             status=400)
        rows = body["instances"]
        if not isinstance(rows, list):
            self._refuse_deep(rows, above=1)
            raise InputError(f'"instances" must be a list of objects, one per row, got {_describe(rows)}', status=400)
        if not rows:
            raise InputError('"instances" is empty: send at least one row', status=400)
        if len(rows) > self.max_batch:
            raise InputError(
                f"batch of {len(rows)} rows exceeds the limit of {self.max_batch}; split it into smaller "
                f"requests, or {self.limits.raise_with('max_batch', len(rows))}", status=413)
        return rows

    def _refuse_deep(self, value: Any, above: int = 0) -> None:
        """A body nested deeper than the limit is refused whole (a valid one is 3 deep). Only bodies
        already found wrong are measured: a valid one cannot nest, so the common path pays nothing."""
        if above + nesting(value, self.limits.max_depth) > self.limits.max_depth:
            raise too_deep(self.limits)

    def columns_of(self, rows: list) -> dict[str, list]:
        """Validate every row; return the values column by column."""
        quick = self._columns_if_clean(rows)
        return quick if quick is not None else self._columns_row_by_row(rows)

    def _columns_if_clean(self, rows: list) -> dict[str, list] | None:
        """The columns of ``rows`` when every cell is plainly valid, checked a whole column at a time; None
        when any row or cell needs a closer look. The row-by-row check then decides, and words, every
        problem: this path only ever says yes, so it cannot change an answer, only how fast a clean body
        gets one (a 100-row request spent a third of its time in the per-cell check)."""
        known, width = self._known, len(self.names)
        if not rows or not width:
            return None
        try:
            if not all(type(row) is dict and len(row) == width and row.keys() == known for row in rows):
                return None
            cells = map(self._getter, rows)
            columns = list(zip(*cells)) if width > 1 else [tuple(cells)]
            if not all(check.all_clean(column) for (_, check), column in zip(self._checks, columns)):
                return None
        except (TypeError, ValueError, OverflowError):  # an unhashable or unconvertible cell: look row by row
            return None
        return {name: list(column) for name, column in zip(self.names, columns)}

    def _columns_row_by_row(self, rows: list) -> dict[str, list]:
        problems: list[dict] = []
        count = 0
        values: dict[str, list] = {name: [] for name in self.names}
        for i, row in enumerate(rows):
            found = self._row_problems(i, row, values)
            if found:
                count += len(found)
                problems.extend(found[: max(0, MAX_DETAILS - len(problems))])
        if count:
            self._refuse_deep(rows, above=1)
            raise _problems_error(problems, count)
        return values

    def _row_problems(self, i: int, row: Any, values: dict[str, list]) -> list[dict]:
        if not isinstance(row, dict):
            return [{"row": i, "column": None, "problem": f"expected an object, got {_describe(row)}"}]
        problems = []
        if len(row) != len(self.names) or not self._known.issuperset(row):
            for name in sorted(row.keys() - self._known)[:MAX_DETAILS]:
                problems.append({"row": i, "column": clip(name), "problem": "unknown column; the model does not use it"})
        for name, check in self._checks:
            if name not in row:
                problems.append({"row": i, "column": name, "problem": "missing column"})
                continue
            value = row[name]
            if problem := check.verdict(value):
                problems.append({"row": i, "column": name, "problem": problem})
            values[name].append(value)
        return problems

    def frame(self, rows: list):
        """Check ``rows`` and build the pandas DataFrame with the training dtypes."""
        return self.build(self.columns_of(rows))

    def build(self, values: dict[str, list]):
        """The DataFrame with the training dtypes, from checked column values."""
        import pandas as pd

        data = {column["name"]: _series(column, values[column["name"]]) for column in self.columns}
        return pd.DataFrame(data, columns=self.names)


def too_deep(limits: Limits) -> InputError:
    return InputError(
        f"the JSON is nested more than {limits.max_depth} levels deep; a request is "
        f'{{"instances": [{{"column": value, ...}}]}}, 3 levels; {limits.raise_with("max_depth", 32)} '
        "if deeper bodies are expected", status=400)


def _series(column: dict, values):
    """One column of the model's frame from its checked values: a list (a request's, or batch scoring's
    row-wise check), or a numpy array from batch scoring's columnar check (batchcheck.py): numbers with
    NaN for null, or objects with None for null."""
    import numpy as np
    import pandas as pd

    dtype = column["dtype"]
    if column["kind"] == "category" and dtype == "category":
        return pd.Categorical(values, categories=column["categories"])
    if column["kind"] not in ("integer", "number", "boolean"):
        if isinstance(values, np.ndarray):  # nulls are None already
            return pd.array(values, dtype=dtype)
        return pd.array([None if _is_null(v) else v for v in values], dtype=dtype)
    nullable = dtype.startswith(("Int", "UInt", "Float", "boolean"))  # pandas nullable dtypes
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.tolist()
    if isinstance(values, np.ndarray):
        nulls = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), bool)
        if not nulls.any():
            return _typed(values, dtype)
        if not nullable:  # as below: a column with nulls becomes float64, NaN for each null
            return np.where(nulls, np.nan, values).astype("float64")
        values = values.tolist()
    if any(_is_null(v) for v in values):
        if nullable:
            return pd.array([None if _is_null(v) else v for v in values], dtype=dtype)
        return np.array([np.nan if _is_null(v) else v for v in values], dtype="float64")
    return _typed(values, dtype)


def _typed(values, dtype: str):
    import numpy as np
    import pandas as pd

    return pd.array(values, dtype=dtype) if dtype[0].isupper() or dtype == "boolean" else np.asarray(values, dtype=dtype)


def _problems_error(problems: list[dict], count: int) -> InputError:
    first = problems[0]
    where = f"row {first['row']}" + (f", column {first['column']!r}" if first["column"] is not None else "")
    more = f" (and {count - 1} more problem{'s' if count > 2 else ''}; see details)" if count > 1 else ""
    return InputError(f"{where}: {first['problem']}{more}", details=problems[:MAX_DETAILS], status=422)
