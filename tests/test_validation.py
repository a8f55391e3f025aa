"""Hostile request bodies against the runtime's parser and validator (issue 13), no server needed:
each case seen answered 500 or 200 becomes a 4xx naming what is wrong, and property tests show that any
JSON value or any bytes get an answer or a 4xx, never another exception."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploykit._runtime.errors import ECHO_LIMIT, InputError
from deploykit._runtime.limits import Limits
from deploykit._runtime.model import parse_json
from deploykit._runtime.schema import InstanceValidator
from deploykit._schema import infer_schema

LIMITS = Limits(max_batch=50, max_string=1000, max_depth=16, max_body_bytes=1 << 20)


def training_frame() -> pd.DataFrame:
    """A training frame with a column of each kind and dtype the validator tells apart."""
    return pd.DataFrame({
        "age": np.array([30, 41, 52], dtype="int64"),
        "small": np.array([1, 2, 3], dtype="int8"),
        "income": [1.5, np.nan, 3.0],
        "ratio": np.array([0.5, 0.25, 1.0], dtype="float32"),
        "plan": ["basic", "pro", "basic"],
        "vip": [True, False, True],
        "visits": pd.array([1, None, 3], dtype="Int64"),
    })


@pytest.fixture(scope="module")
def schema():
    return infer_schema(training_frame(), max_batch=LIMITS.max_batch)


@pytest.fixture(scope="module")
def validator(schema):
    return InstanceValidator(schema, LIMITS)


def _row(**changes):
    row = {"age": 30, "small": 1, "income": 1.0, "ratio": 0.5, "plan": "basic", "vip": True, "visits": 2}
    row.update(changes)
    return row


def _refused(validator, body) -> InputError:
    with pytest.raises(InputError) as info:
        parsed = parse_json(body, LIMITS) if isinstance(body, bytes) else body
        validator.columns_of(validator.instances(parsed))
    return info.value


@pytest.mark.parametrize("value, fragment", [
    ({}, "an object with 0 keys"),
    ({"a": [1, 2]}, "an object with 1 key"),
    ([1, 2], "a list of 2 items"),
    (5, "expected a string (one of the trained categories), got 5 (int)"),
    (True, "expected a string"),
])
def test_a_container_or_wrong_type_in_a_category_is_a_422_not_unhashable(validator, value, fragment):
    error = _refused(validator, {"instances": [_row(plan=value)]})
    assert error.status == 422 and error.details[0]["column"] == "plan" and fragment in error.details[0]["problem"]


@pytest.mark.parametrize("literal, column, fragment", [
    (str(10**20), "age", "outside -9223372036854775808 to 9223372036854775807, the range of int64"),
    (str(2**63), "age", "outside -9223372036854775808 to 9223372036854775807"),
    ("9" * 400, "age", "outside"),
    ("1e300", "age", "outside"),
    ("1e16", "age", "float too large to stand for one exact integer"),
    (str(-(2**63) - 1), "age", "float too large"),  # orjson reads it as the float -2**63: not exactly that integer
    ("200", "small", "the range of int8"),
    ("9" * 400, "income", "(exclusive), the range of float64"),
    ("-" + "1" + "0" * 309, "income", "the range of float64"),
    ("1e39", "ratio", "the range of float32"),
    ("Infinity", "income", "expected a finite number"),
])
def test_numbers_a_column_cannot_hold_are_422_naming_the_range(validator, literal, column, fragment):
    row = json.dumps(_row()).replace(f'"{column}": {json.dumps(_row()[column])}', f'"{column}": {literal}')
    error = _refused(validator, f'{{"instances": [{row}]}}'.encode())
    assert error.status == 422 and error.details[0]["column"] == column and fragment in error.details[0]["problem"]
    assert len(str(error)) < 400


def test_the_largest_values_a_column_holds_are_accepted(validator):
    columns = validator.columns_of([_row(age=2**63 - 1, small=-128, income=-1.7e308, ratio=3.4e38)])
    frame = validator.build(columns)
    assert frame["age"].iloc[0] == 2**63 - 1 and frame["small"].dtype == np.int8 and math.isfinite(frame["ratio"].iloc[0])


def test_json_nested_10000_levels_is_a_400_saying_the_limit(validator):
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"instances": [{"plan": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"):
        error = _refused(validator, body)
        assert error.status == 400 and "nested more than 16 levels" in str(error)
    error = _refused(validator, {"instances": [_row(plan=[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]])]})
    assert error.status == 400 and "max_depth" in str(error)  # what to pass to raise it


def test_a_wrong_top_level_shape_is_a_400(validator):
    assert "got an object with 1 key" in str(_refused(validator, {"region": {}}))  # schemathesis's 500
    assert _refused(validator, {"region": {}}).status == 400
    error = _refused(validator, {"instances": [_row()], "signature": "x"})
    assert error.status == 400 and "unknown key 'signature'" in str(error)


def test_echoed_values_are_cut_to_about_80_characters(validator):
    huge = "z" * 10_000_000
    for row in (_row(plan=huge[:999]), _row(plan=huge), {**_row(), huge[:5000]: 1}):
        error = _refused(validator, {"instances": [row]})
        body = json.dumps(error.to_json())
        assert error.status == 422 and len(body) < 1200, len(body)
        assert "z" * (ECHO_LIMIT + 1) not in body


def test_a_string_over_the_limit_says_the_limit_and_how_to_raise_it(validator):
    error = _refused(validator, {"instances": [_row(plan="p" * 1001)]})
    assert "a string of 1,001 characters is over the limit of 1,000" in str(error)
    assert "limits={'max_string': 1001}" in str(error)


def test_the_batch_limit_and_the_body_limit_are_413s_saying_the_limit(validator):
    error = _refused(validator, {"instances": [_row()] * 51})
    assert error.status == 413 and "limit of 50" in str(error) and "max_batch=51" in str(error)
    with pytest.raises(InputError) as info:
        parse_json(b" " * (LIMITS.max_body_bytes + 1), LIMITS)
    assert info.value.status == 413 and "limit of 1,048,576 bytes" in str(info.value) and "max_body_bytes" in str(info.value)


@pytest.mark.parametrize("body, fragment", [
    ('{"instances": []}'.encode("utf-16"), "not UTF-8"),
    (b"\xef\xbb\xbf" + b'{"instances": []}', "byte order mark"),
    (b'{"instances": [{"plan": "\\ud800"}]}', "surrogates"),
    (b"", "empty"),
    (b'{"instances": [', "not valid JSON"),
])
def test_bytes_that_are_not_utf8_json_are_a_400(body, fragment):
    with pytest.raises(InputError) as info:
        parse_json(body, LIMITS)
    assert info.value.status == 400 and fragment in str(info.value)


def test_the_documented_leniencies(validator):
    # NaN (json.dumps writes it) is a missing value; duplicate keys keep the last value, as JSON.parse does
    assert parse_json(b'{"a": NaN}', LIMITS)["a"] != parse_json(b'{"a": NaN}', LIMITS)["a"]
    columns = validator.columns_of(parse_json(b'[{"age": 1, "age": 7, "small": 1, "income": NaN, "ratio": 0.5, '
                                              b'"plan": "pro", "vip": false, "visits": null}]', LIMITS))
    assert columns["age"] == [7] and validator.build(columns)["income"].isna().all()


# -- properties: whatever arrives, an answer or a 4xx ------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["basic", "pro", "", 2**63, -(2**63) - 1, 1e300, float("nan")]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=20)
columns = st.sampled_from(["age", "small", "income", "ratio", "plan", "vip", "visits", "other"])
rows = st.dictionaries(columns, values, max_size=9) | st.builds(lambda **kw: _row(**kw), plan=values) | values
bodies = st.dictionaries(st.sampled_from(["instances", "x"]), st.lists(rows, max_size=4) | values, max_size=2) | values


def _answers_or_4xx(validator, body) -> None:
    try:
        columns = validator.columns_of(validator.instances(body))
    except InputError as exc:
        assert 400 <= exc.status < 500
        json.dumps(exc.to_json())  # the error body can always be written
        return
    validator.build(columns)  # what passes builds the model's frame


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_json_value_gets_an_answer_or_a_4xx(validator, body):
    _answers_or_4xx(validator, body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_get_an_answer_or_a_4xx(validator, raw):
    try:
        body = parse_json(raw, LIMITS)
    except InputError as exc:
        assert exc.status == 400
        return
    _answers_or_4xx(validator, body)
