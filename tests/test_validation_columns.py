"""The request validator's whole-column check (``InstanceValidator._columns_if_clean``) against its
row-by-row check: on any rows at all, the two give the same columns, or the whole-column check steps
aside (None) and the row-by-row one decides. It may only ever say yes to what the row-by-row check
accepts, and must say yes to the plain valid bodies it exists for."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit._runtime.errors import InputError
from deploykit._runtime.limits import Limits
from deploykit._runtime.schema import InstanceValidator
from deploykit._schema import infer_schema
from tests.test_validation import _row as one_row
from tests.test_validation import training_frame

LIMITS = Limits(max_batch=50, max_string=12, max_depth=16, max_body_bytes=1 << 20)


@pytest.fixture(scope="module")
def validator():
    frame = training_frame().assign(tier=pd.Categorical([1, 2, 1]))  # and a category of numbers
    return InstanceValidator(infer_schema(frame, max_batch=LIMITS.max_batch), LIMITS)


def _row(**changes):
    return one_row(**{"tier": 1, **changes})


CELLS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.integers(min_value=-200, max_value=200),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from(["basic", "pro", "gold", "x" * 40, ""]), st.sampled_from([1, 2, 3, 1.0, 2.5]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _decide(validator, rows):
    try:
        return "ok", validator._columns_row_by_row(rows)
    except InputError as exc:
        return "refused", (str(exc), exc.details)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.dictionaries(st.sampled_from(["age", "small", "income", "ratio", "plan", "tier", "vip",
                                                          "visits", "unknown"]), CELLS, max_size=3), min_size=1, max_size=6),
       drop=st.lists(st.sampled_from(["", "age", "plan"]), min_size=6, max_size=6))
def test_the_whole_column_check_accepts_only_what_the_row_by_row_check_accepts(validator, changes, drop):
    rows = []
    for change, missing in zip(changes, drop):
        row = _row(**change)
        row.pop(missing, None)
        rows.append(row)
    quick = validator._columns_if_clean(rows)
    verdict, result = _decide(validator, rows)
    if quick is not None:
        assert verdict == "ok" and quick == result
        assert all(type(a) is type(b) for name in quick for a, b in zip(quick[name], result[name]))
    # and the public call gives exactly the row-by-row answer either way
    try:
        assert ("ok", validator.columns_of(rows)) == (verdict, result)
    except InputError as exc:
        assert ("refused", (str(exc), exc.details)) == (verdict, result)


def test_plain_valid_bodies_take_the_whole_column_check(validator):
    rows = [_row(age=20 + i, income=float(i), plan=["basic", "pro"][i % 2], tier=[1, 2][i % 2], vip=i % 3 == 0,
                 small=-128 if i == 0 else 127) for i in range(50)]
    quick = validator._columns_if_clean(rows)
    assert quick is not None and quick == validator._columns_row_by_row(rows)
    assert quick["small"][:2] == [-128, 127] and quick["plan"][:2] == ["basic", "pro"]


@pytest.mark.parametrize("change", [
    {"age": 2**63}, {"small": 128}, {"income": float("nan")}, {"income": float("inf")}, {"income": True},
    {"age": 3.0}, {"plan": "gold"}, {"plan": "x" * 40}, {"tier": 3}, {"tier": True}, {"vip": 1}, {"visits": None},
    {"ratio": 1e39}, {"unknown": 1}, {"plan": ["basic"]},
])
def test_each_kind_of_doubtful_cell_goes_row_by_row(validator, change):
    rows = [_row(), _row(**change)]
    assert validator._columns_if_clean(rows) is None
