"""The numbers a model takes, probed when packaging: a forest reads float32, so 1e300 is refused up front."""

import numpy as np
import pandas as pd
import pytest

from deploykit._ranges import probe_ranges
from deploykit._runtime.errors import InputError
from deploykit._runtime.schema import InstanceValidator
from deploykit._schema import infer_schema

FLOAT32_MAX = 3.4028234663852886e38


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=60), "n": rng.integers(0, 9, 60)}), pd.Series(rng.integers(0, 2, 60))


def test_a_forest_takes_float32_and_the_validator_refuses_beyond_it(frame):
    from sklearn.ensemble import RandomForestClassifier

    X, y = frame
    schema = infer_schema(X)
    probe_ranges(RandomForestClassifier(n_estimators=3).fit(X, y), X, schema, lambda f: f, classifier=True)
    a, n = schema["columns"]
    assert a["accepts"] == [-FLOAT32_MAX, FLOAT32_MAX] and "accepts" not in n  # int64 fits in float32's range
    validator = InstanceValidator(schema)
    assert validator.columns_of([{"a": 3e38, "n": 2**62}])["a"] == [3e38]
    with pytest.raises(InputError) as info:
        validator.columns_of([{"a": 1e300, "n": 1}])
    assert "the range this model takes (found when the package was made)" in info.value.details[0]["problem"]


def test_a_model_that_takes_every_value_gets_no_bound(frame):
    from sklearn.dummy import DummyClassifier

    X, y = frame
    schema = infer_schema(X)
    probe_ranges(DummyClassifier().fit(X, y), X, schema, lambda f: f, classifier=True)
    assert all("accepts" not in column for column in schema["columns"])
