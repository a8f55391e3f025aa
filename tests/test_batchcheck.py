"""Batch scoring's columnar check gives exactly what the row-wise check gives: the same good rows, the
same reject lines word for word, the same frame for the model (dtypes too), on tables full of bad cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from deploykit._runtime import batch, batchcheck, batchio
from deploykit._runtime.limits import Limits
from deploykit._runtime.schema import InstanceValidator

SCHEMA = {"columns": [
    {"name": "count", "kind": "integer", "dtype": "int64", "nullable": False},
    {"name": "small", "kind": "integer", "dtype": "int8", "nullable": False},
    {"name": "maybe", "kind": "integer", "dtype": "Int64", "nullable": True},
    {"name": "price", "kind": "number", "dtype": "float64", "nullable": False},
    {"name": "ratio", "kind": "number", "dtype": "float32", "nullable": True},
    {"name": "dose", "kind": "number", "dtype": "float64", "nullable": False, "accepts": [-10, 10]},
    {"name": "active", "kind": "boolean", "dtype": "bool", "nullable": False},
    {"name": "plan", "kind": "category", "dtype": "str", "nullable": False, "categories": ["basic", "plus", "pro"],
     "unknown": "the model's OneHotEncoder(handle_unknown='ignore') would encode it as all zeros"},
    {"name": "tier", "kind": "category", "dtype": "category", "nullable": True, "categories": [1, 2, 3]},
    {"name": "note", "kind": "string", "dtype": "object", "nullable": True},
]}
LONG = "x" * 10_001  # over the default max_string
INF, NAN = float("inf"), float("nan")

# Row 0 is clean; every other row has one bad cell, except row 14, which has two.
GOOD = {"count": 1, "small": 2, "maybe": 3, "price": 1.5, "ratio": 0.5, "dose": 10, "active": True, "plan": "pro",
        "tier": 2, "note": "hi"}
BAD = [
    {}, {"count": 2.5}, {"count": INF}, {"count": None}, {"count": NAN}, {"count": 2.0**60}, {"small": 300},
    {"price": -INF}, {"price": None}, {"ratio": 1e39}, {"dose": 10.5}, {"plan": "gold"}, {"plan": None},
    {"plan": LONG}, {"count": -1.5, "plan": "enterprise"}, {"tier": 4}, {"active": None}, {"price": 1.7976931348623157e308},
]
NULLS = {"maybe": None, "ratio": NAN, "tier": None, "note": None}  # allowed: these rows are good


def _rows(extra: list[dict]) -> list[dict]:
    rows = [{**GOOD, **bad} for bad in BAD] + [{**GOOD, **NULLS}] + [dict(GOOD, count=i, price=i / 7) for i in range(30)]
    return rows + [{**GOOD, **e} for e in extra]


TYPES = {"count": pa.float64(), "small": pa.int64(), "maybe": pa.int64(), "price": pa.float64(), "ratio": pa.float64(),
         "dose": pa.float64(), "active": pa.bool_(), "plan": pa.string(), "tier": pa.float64(), "note": pa.string()}


def _table(rows: list[dict], types: dict) -> pa.Table:
    return pa.table({name: pa.array([row[name] for row in rows], types[name]) for name in types})


def _both(table: pa.Table, *, text: bool = False, first_row: int = 1000, validator=None):
    validator = validator or InstanceValidator(SCHEMA)
    columnar = batchcheck.check(validator, table, first_row, text=text)
    assert columnar is not None, "the columnar check should cover these column types"
    rowwise = batch.validate(validator, batchio.cells(table, SCHEMA, text=text), first_row)
    return validator, columnar, rowwise


def _assert_same(validator, columnar, rowwise) -> None:
    (good_c, values_c, rejects_c), (good_r, values_r, rejects_r) = columnar, rowwise
    assert np.asarray(good_c).tolist() == list(good_r)
    assert rejects_c == rejects_r
    frame_c, frame_r = validator.build(values_c), validator.build(values_r)
    assert frame_c.dtypes.tolist() == frame_r.dtypes.tolist()
    pd.testing.assert_frame_equal(frame_c, frame_r, check_exact=True)


def test_every_kind_of_bad_cell_gets_the_row_wise_words():
    table = _table(_rows([]), TYPES)
    validator, columnar, rowwise = _both(table)
    _assert_same(validator, columnar, rowwise)
    rejects = columnar[2]
    assert sorted({r["row"] for r in rejects}) == [1000 + i for i in range(1, len(BAD))]
    assert [r["column"] for r in rejects if r["row"] == 1014] == ["count", "plan"]  # two problems, two lines
    problems = {(r["row"] - 1000, r["column"]): r["problem"] for r in rejects}
    assert problems[2, "count"] == "expected a finite integer, got inf"
    assert problems[11, "plan"].startswith("unseen category 'gold' (known: 'basic', 'plus', 'pro'); the model's")
    assert problems[13, "plan"].startswith("a string of 10,001 characters is over the limit of 10,000")
    assert "null is not allowed" in problems[4, "count"] and "(exclusive)" in problems[17, "price"]


def test_other_arrow_types_bools_in_numbers_and_text_in_numbers():
    """The columns stored as other Arrow types: integers as int64 and uint64, numbers as int64 and bool,
    text in a category of numbers, integers where text or booleans are expected, dictionary-encoded text."""
    integral = dict(GOOD, price=2, tier=2)
    rows = [dict(integral, count=i, price=i * 3, dose=i - 15, small=i * 5, tier=i % 5, maybe=None if i % 3 else i)
            for i in range(40)]
    rows[7]["count"] = 2**63 + 5  # past int64
    types = dict(TYPES, count=pa.uint64(), price=pa.int64(), dose=pa.int64(), tier=pa.int64(),
                 plan=pa.dictionary(pa.int32(), pa.string()))
    validator, columnar, rowwise = _both(_table(rows, types))
    _assert_same(validator, columnar, rowwise)
    columns = {(r["row"] - 1000, r["column"]) for r in columnar[2]}
    assert {(7, "count"), (0, "dose"), (26, "small"), (4, "tier"), (0, "tier")} <= columns
    flipped = [dict(row, count=i, price=i % 2 == 0, note=i, active=i % 3, tier=str(i % 5)) for i, row in enumerate(rows)]
    types = dict(types, count=pa.int64(), price=pa.bool_(), note=pa.int64(), active=pa.int64(), tier=pa.string())
    validator, columnar, rowwise = _both(_table(flipped, types))
    _assert_same(validator, columnar, rowwise)
    problems = {r["column"]: r["problem"] for r in columnar[2] if r["row"] == 1001}
    assert problems["price"] == "expected a number, got False (bool)"
    assert problems["note"] == "expected a string, got 1 (int)"
    assert problems["active"] == "expected true or false, got 1 (int)"
    assert problems["tier"] == "expected a number (one of the trained categories), got '1' (str)"


def test_csv_text_cells_are_converted_then_checked_the_same_way():
    cells = {"count": ["1", "2.5", "lots", None, "1e400", "-0", "nan", "7"],
             "price": ["1.5", "x", "inf", None, "3", "2", "NaN", "4.25"],
             "active": ["true", "yes", "0", "1", None, "False", "TRUE", "true"],
             "tier": ["1", "2.0", "4", None, "one", "3", "2", "1"]}
    n = len(cells["count"])
    columns = {name: cells.get(name, [str(GOOD[name])] * n) for name in TYPES}
    columns["ratio"] = [None] * n  # an empty CSV column: nullable, so fine
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    validator, columnar, rowwise = _both(table, text=True)
    _assert_same(validator, columnar, rowwise)
    assert {r["row"] - 1000 for r in columnar[2]} == {1, 2, 3, 4, 6}
    assert columnar[2][0]["problem"] == "expected an integer, got 2.5 (float) which has a fractional part"


def test_a_chunk_of_only_good_rows_and_an_empty_chunk():
    rows = [dict(GOOD, count=i, price=i / 3, maybe=None if i % 4 else i) for i in range(50)]
    validator, columnar, rowwise = _both(_table(rows, TYPES))
    _assert_same(validator, columnar, rowwise)
    assert columnar[2] == [] and len(columnar[0]) == 50
    assert isinstance(columnar[1]["price"], np.ndarray)  # numbers stay numpy as far as the frame
    _assert_same(*_both(_table(rows, TYPES).slice(0, 0)))
    empty = _table([dict(row, note=None, ratio=None) for row in rows], dict(TYPES, note=pa.null(), ratio=pa.null()))
    _assert_same(*_both(empty))  # columns of Arrow's null type (nulls are allowed in these two)
    validator, columnar, rowwise = _both(_table([dict(row, count=None) for row in rows], dict(TYPES, count=pa.null())))
    _assert_same(validator, columnar, rowwise)
    assert len(columnar[0]) == 0 and len(columnar[2]) == 50
    _assert_same(*_both(pa.concat_tables([_table(rows[:20], TYPES), _table(rows[20:], TYPES)])))  # two Arrow chunks


def test_a_row_with_more_problems_than_a_request_lists_is_capped_the_same_way():
    wide = {"columns": [{"name": f"c{i}", "kind": "integer", "dtype": "int64", "nullable": False} for i in range(25)]}
    validator = InstanceValidator(wide, Limits())
    table = pa.table({f"c{i}": pa.array([1, None, 3], pa.int64()) for i in range(25)})
    columnar = batchcheck.check(validator, table, 0, text=False)
    rowwise = batch.validate(validator, batchio.cells(table, wide, text=False), 0)
    assert columnar[2] == rowwise[2] and len(columnar[2]) == 20


@pytest.mark.parametrize("arrow_type", [pa.list_(pa.string()), pa.timestamp("s"), pa.decimal128(5, 2)])
def test_types_the_columnar_check_does_not_cover_go_row_wise(arrow_type):
    values = {pa.types.is_list: [["basic"], None], pa.types.is_timestamp: [0, None],
              pa.types.is_decimal: [None, None]}
    sample = next(v for test, v in values.items() if test(arrow_type))
    rows = [dict(GOOD), dict(GOOD)]
    table = _table(rows, TYPES).set_column(7, "plan", pa.array(sample, arrow_type))
    assert batchcheck.check(InstanceValidator(SCHEMA), table, 0, text=False) is None
