"""The capture writer's fast paths give what its plain ones give: a row's cells checked at once
(``_cells``) equal the per-value conversion (``_cell``), and bodies parse the same with orjson as with
the standard library, NaN and Infinity included (orjson refuses them; the standard parser takes over)."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from deploykit._front import capture
from deploykit._front.capture import _cell, _cells, _instances

VALUES = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=5),
                   st.integers(min_value=-(1 << 70), max_value=1 << 70), st.integers(min_value=-5, max_value=5),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, max_size=8).map(tuple))
def test_a_row_of_cells_is_stored_as_its_values_one_by_one(values):
    assert _cells(values) == tuple(map(_cell, values))


def test_integers_past_int64_become_floats_within_a_row():
    assert _cells((1, 2.5, "a", None)) == (1, 2.5, "a", None)
    assert _cells((1, 1 << 64)) == (1, float(1 << 64))
    assert _cells(([1], {"a": 1})) == ("[1]", '{"a": 1}')


def test_bodies_parse_alike_with_and_without_orjson(monkeypatch):
    body = b'{"instances": [{"a": 1.5, "b": "x"}, {"a": NaN, "b": null}, {"a": Infinity, "b": "y"}]}'
    with_orjson = _instances(body)
    monkeypatch.setattr(capture, "_orjson_loads", None)
    plain = _instances(body)
    assert json.dumps(with_orjson) == json.dumps(plain) and math.isnan(plain[1]["a"]) and plain[2]["a"] == math.inf
    assert _instances(b'{"instances": [{"a": 1}]}') == [{"a": 1}]
