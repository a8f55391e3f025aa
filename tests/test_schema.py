"""Schema inference from the training frame, and request validation against it (no server needed)."""

import numpy as np
import pandas as pd
import pytest

from deploykit import SchemaError
from deploykit._runtime.errors import InputError
from deploykit._runtime.jsonschema import instance_schema
from deploykit._runtime.schema import InstanceValidator
from deploykit._schema import as_frame, infer_schema, records


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "age": np.array([30, 41, 52], dtype="int64"),
            "income": [1.5, np.nan, 3.0],
            "plan": ["basic", "pro", "basic"],
            "tier": pd.Categorical(["a", "b", "a"], categories=["a", "b", "c"]),
            "vip": [True, False, True],
            "visits": pd.array([1, None, 3], dtype="Int64"),
        }
    )


def test_infers_names_order_dtypes_nulls_categories_ranges(frame):
    schema = infer_schema(frame)
    cols = {c["name"]: c for c in schema["columns"]}
    assert [c["name"] for c in schema["columns"]] == list(frame.columns)
    assert cols["age"] == {**cols["age"], "kind": "integer", "dtype": "int64", "nullable": False, "min": 30, "max": 52}
    assert cols["income"]["kind"] == "number" and cols["income"]["nullable"] is True
    assert cols["income"]["min"] == 1.5 and cols["income"]["max"] == 3.0
    assert cols["plan"]["kind"] == "category" and cols["plan"]["categories"] == ["basic", "pro"]
    assert cols["tier"]["categories"] == ["a", "b", "c"] and cols["tier"]["dtype"] == "category"
    assert cols["vip"]["kind"] == "boolean"
    assert cols["visits"]["kind"] == "integer" and cols["visits"]["nullable"] is True


def test_numpy_columns_become_f0_to_fn():
    frame = as_frame(np.zeros((3, 4)))
    assert list(frame.columns) == ["f0", "f1", "f2", "f3"]


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (pd.DataFrame({0: [1, 2]}), "not strings"),
        (pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-02"])}), "datetime64"),
        (pd.DataFrame({"m": ["a", 1]}, dtype=object), "mixes value types"),
        (np.zeros(3), "2-dimensional"),
        ("not a frame", "DataFrame or a 2-D numpy array"),
    ],
)
def test_unusable_training_data_is_a_clear_schema_error(bad, fragment):
    with pytest.raises(SchemaError, match=fragment):
        infer_schema(as_frame(bad))


def test_valid_rows_become_the_training_dtypes(frame):
    validator = InstanceValidator(infer_schema(frame))
    rebuilt = validator.frame(records(frame))
    assert list(rebuilt.dtypes.astype(str)) == list(frame.dtypes.astype(str))
    pd.testing.assert_frame_equal(rebuilt, frame, check_dtype=True)


def _problems(frame, rows):
    validator = InstanceValidator(infer_schema(frame))
    with pytest.raises(InputError) as info:
        validator.frame(validator.instances({"instances": rows}))
    return info.value


def _row(**changes):
    row = {"age": 30, "income": 1.0, "plan": "basic", "tier": "a", "vip": True, "visits": 2}
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


@pytest.mark.parametrize(
    "row, column, fragment",
    [
        (_row(age=...), "age", "missing column"),
        (_row(colour="red"), "colour", "unknown column"),
        (_row(age="thirty"), "age", "expected an integer, got 'thirty'"),
        (_row(age=30.5), "age", "fractional part"),
        (_row(age=True), "age", "expected an integer"),
        (_row(age=None), "age", "null is not allowed: the column was trained as int64 without missing values"),
        (_row(income="1.0"), "income", "expected a number"),
        (_row(income=float("inf")), "income", "finite"),
        (_row(plan="gold"), "plan", "unseen category 'gold' (known: 'basic', 'pro')"),
        (_row(vip="yes"), "vip", "expected true or false"),
    ],
)
def test_each_bad_value_is_named_by_row_and_column(frame, row, column, fragment):
    error = _problems(frame, [_row(), row])
    assert error.status == 422
    assert error.details[0]["row"] == 1 and error.details[0]["column"] == column
    assert fragment in error.details[0]["problem"]
    assert str(error).startswith(f"row 1, column {column!r}")


def test_integral_float_is_accepted_for_an_int_column(frame):
    validator = InstanceValidator(infer_schema(frame))
    out = validator.frame([_row(age=31.0)])
    assert out["age"].dtype == np.int64 and out["age"].iloc[0] == 31


def test_null_allowed_where_training_had_nulls(frame):
    validator = InstanceValidator(infer_schema(frame))
    out = validator.frame([_row(income=None, visits=None)])
    assert np.isnan(out["income"].iloc[0]) and out["visits"].isna().iloc[0]
    assert str(out["visits"].dtype) == "Int64"


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ([], 400, "JSON object"),
        ({"rows": []}, 400, "JSON object"),
        ({"instances": {}}, 400, "must be a list"),
        ({"instances": []}, 400, "empty"),
        ({"instances": [{"age": 1}] * 6}, 413, "exceeds the limit of 5"),
        ({"instances": [5]}, 422, "expected an object"),
    ],
)
def test_request_shape_errors(frame, body, status, fragment):
    validator = InstanceValidator(infer_schema(frame, max_batch=5))
    with pytest.raises(InputError) as info:
        validator.frame(validator.instances(body))
    assert info.value.status == status and fragment in str(info.value)


def test_json_schema_of_an_instance_validates_good_and_rejects_bad(frame):
    import jsonschema

    schema = instance_schema(infer_schema(frame))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for row in records(frame):
        assert not list(validator.iter_errors(row))
    assert list(validator.iter_errors(_row(plan="gold")))
    assert list(validator.iter_errors(_row(age=None)))
    assert list(validator.iter_errors(_row(extra=1)))


# -- free text or categories (issue 13) --------------------------------------------------------------------
def _reviews(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["great", "slow", "delivery", "broke", "after", "two", "weeks", "would", "buy", "again", "refund"]
    return [" ".join(rng.choice(words, size=6)) + f" #{i}" for i in range(n)]


def test_free_text_with_few_distinct_values_is_text_and_short_repeated_values_are_categories():
    frame = pd.DataFrame({"review": _reviews(150), "plan": ["basic", "pro", "team"] * 50})
    kinds = {c["name"]: c for c in infer_schema(frame)["columns"]}
    assert kinds["review"]["kind"] == "string" and kinds["review"]["inferred"].startswith("values:")
    assert kinds["plan"]["kind"] == "category" and kinds["plan"]["categories"] == ["basic", "pro", "team"]


def test_what_the_pipeline_does_with_a_column_decides_before_its_values():
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import OneHotEncoder

    from deploykit._schema import string_kinds

    frame = pd.DataFrame({"title": ["red", "blue"] * 20, "code": [f"c{i}" for i in range(40)]})
    model = ColumnTransformer([("t", TfidfVectorizer(), "title"), ("c", OneHotEncoder(handle_unknown="ignore"), ["code"])])
    model.fit(frame)
    hints = string_kinds(model, frame, None)
    assert hints == {"title": ("text", "pipeline: its TfidfVectorizer reads the column"),
                     "code": ("category", "pipeline: its OneHotEncoder reads the column")}
    kinds = {c["name"]: c["kind"] for c in infer_schema(frame, hints=hints)["columns"]}
    assert kinds == {"title": "string", "code": "category"}  # values alone would say the opposite
    overridden = string_kinds(model, frame, {"title": "category"})
    assert overridden["title"] == ("category", "schema: category")


@pytest.mark.parametrize("overrides, fragment", [
    ({"nope": "text"}, "does not use"),
    ({"plan": "free"}, "kind is 'text'"),
    ({"n": "text"}, "is int64, not strings"),
    ({"x": "category"}, "is float64"),
])
def test_an_unusable_override_names_the_column(overrides, fragment):
    from deploykit._schema import string_kinds

    frame = pd.DataFrame({"plan": ["a", "b"], "n": [1, 2], "x": [0.5, 1.5]})
    with pytest.raises(SchemaError, match=fragment):
        string_kinds(None, frame, overrides)


def test_an_unseen_value_of_a_column_taken_for_a_category_says_how_to_make_it_text():
    frame = pd.DataFrame({"city": ["paris", "rome"] * 10, "n": list(range(20))})
    validator = InstanceValidator(infer_schema(frame))
    with pytest.raises(InputError) as info:
        validator.columns_of([{"city": "oslo", "n": 1}])
    assert "if it is free text, package with schema={'city': 'text'}" in str(info.value)


def test_an_integer_column_can_be_made_a_category():
    frame = pd.DataFrame({"zip": np.array([75001, 75002, 75001], dtype="int64")})
    column = infer_schema(frame, hints={"zip": ("category", "schema: category")})["columns"][0]
    assert column["kind"] == "category" and column["categories"] == [75001, 75002]
    validator = InstanceValidator({"columns": [column]})
    assert validator.columns_of([{"zip": 75002}]) == {"zip": [75002]}
    with pytest.raises(InputError, match="unseen category 75003"):
        validator.columns_of([{"zip": 75003}])


def test_data_no_row_of_which_fits_gets_an_error_naming_the_column_and_the_way_out():
    from deploykit._schema import none_fit

    frame = pd.DataFrame({"city": ["paris", "rome"] * 10, "n": list(range(20))})
    error = none_fit(infer_schema(frame), [{"city": "oslo", "n": 1}, {"city": "lima", "n": 2}])
    assert error.column == "city" and "column 'city' refuses 2 of them (row 0: unseen category 'oslo'" in str(error)
    assert "pass schema={'city': 'text'}" in str(error)
