"""Drift, thresholds and the report on the churn data (deploykit.demo.make_churn), without a service.

The live-service versions of these checks (capture through the front) are the lead's integration tests.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from deploykit._monitor import reference as reference_mod
from deploykit._monitor.drift import drift
from deploykit._monitor.reference import make_reference
from deploykit._schema import infer_schema
from deploykit.demo import churn_pipeline, make_churn

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "age"]
# Stands in for the card's SHAP ranking (deploykit/_card/_importance.py), which needs a packaged model.
TOP = ["tenure_months", "contract", "support_calls"]


@pytest.fixture(scope="module")
def data():
    X, y = make_churn(n=3600, seed=0)
    train, held_out = X[:3000], X[3000:].reset_index(drop=True)
    model = churn_pipeline().fit(train, y[:3000])
    return {"train": train, "y_train": y[:3000], "held_out": held_out, "y_held_out": y[3000:].reset_index(drop=True),
            "model": model}


@pytest.fixture(scope="module")
def ref(data):
    predictions = data["model"].predict(data["held_out"])
    return make_reference(infer_schema(data["train"]), data["train"], predictions=predictions, task="binary",
                          classes=[0, 1], top_features=TOP, sensitive_features=["contract", "age"],
                          name="churn", version="1")


def live(data, frame):
    frame = frame.copy()
    frame["prediction"] = data["model"].predict(frame)
    return frame


def test_reference_is_small_json_and_names_every_feature(ref, data):
    text = json.dumps(ref)
    assert len(text) < 200_000
    assert [f["name"] for f in ref["features"]] == list(data["train"].columns)
    kinds = {f["name"]: f["kind"] for f in ref["features"]}
    assert kinds["age"] == "numeric" and kinds["contract"] == "categorical"
    assert set(ref["thresholds"]) == {str(n) for n in reference_mod.CARD_SIZES}


def test_held_out_rows_give_no_drift(ref, data):
    report = drift(ref, live(data, data["held_out"]))
    assert report["status"] == "ok" and report["rows"] == 600
    assert [f["name"] for f in report["features"] if f["drifted"]] == []
    assert report["verdict"]["drift"] is False
    assert report["prediction"]["drifted"] is False


@pytest.mark.parametrize("column", ["age", "tenure_months"])
def test_a_shifted_feature_drifts_alone(ref, data, column):
    shifted = data["held_out"].copy()
    shifted[column] = shifted[column] + 1.5 * data["train"][column].std()
    report = drift(ref, live(data, shifted))
    assert [f["name"] for f in report["features"] if f["drifted"]] == [column]
    assert report["features"][0]["name"] == column  # drifted features come first
    # tenure_months is a top-3 SHAP feature: one drifted top feature is a drift verdict; age is not
    assert report["verdict"]["drift"] is (column in TOP)


def test_false_alarms_on_reference_windows_stay_under_the_rate(ref, data):
    """Windows resampled from the training rows, and fresh rows of the same population: each feature
    alarms in at most alpha of them. A count over M windows is Binomial(M, p) with p <= alpha; the
    bound is its upper quantile at 1e-4 divided over every (feature, size) check."""
    rng = np.random.default_rng(11)
    fresh, _ = make_churn(n=20_000, seed=7)
    sources = {30: data["train"], 100: data["train"], 600: data["train"], "fresh 600": fresh}
    windows = 120
    checks = len(sources) * len(ref["features"])
    bound = scipy_stats.binom.ppf(1 - 1e-4 / checks, windows, ref["alpha"])
    for size, source in sources.items():
        rows = 600 if size == "fresh 600" else size
        alarms = pd.Series(0, index=[f["name"] for f in ref["features"]])
        for _ in range(windows):
            window = source.iloc[rng.integers(0, len(source), rows)].reset_index(drop=True)
            for feature in drift(ref, window)["features"]:
                alarms[feature["name"]] += feature["drifted"]
        assert (alarms <= bound).all(), f"window {size}: alarms per feature {alarms.to_dict()} exceed {bound:.0f}/{windows}"
        assert alarms.sum() / (windows * len(alarms)) <= 0.05  # the bound, on average over features


def test_under_30_rows_is_insufficient_data_not_drift(ref, data):
    shifted = data["held_out"].iloc[:29].copy()
    shifted["age"] += 100
    report = drift(ref, shifted)
    assert report["status"] == "insufficient data"
    assert report["verdict"] == {"drift": False, "status": "insufficient data",
                                 "reasons": ["only 29 rows in the window; drift needs at least 30"]}
    assert report["features"] == []


def test_nan_and_empty_columns_do_not_crash(ref, data):
    window = data["held_out"].copy()
    window["monthly_charges"] = np.nan
    window = window.drop(columns=["payment_method"])
    report = drift(ref, window)
    by_name = {f["name"]: f for f in report["features"]}
    monthly = {t["test"]: t for t in by_name["monthly_charges"]["tests"]}
    assert monthly["ks"]["value"] is None and monthly["ks"]["drifted"] is False
    assert monthly["null_rate"]["value"] == pytest.approx(1.0) and monthly["null_rate"]["drifted"]
    assert by_name["payment_method"]["null_rate"] == 1.0 and by_name["payment_method"]["drifted"]
    assert by_name["tenure_months"]["drifted"] is False


def test_unseen_categories_are_listed_and_drift(ref, data):
    window = data["held_out"].copy()
    window.loc[:199, "internet"] = "satellite"
    report = drift(ref, window)
    internet = next(f for f in report["features"] if f["name"] == "internet")
    assert internet["unseen"] == [{"value": "satellite", "rows": 200}]
    assert internet["drifted"]
    assert internet["shares"]["bins"][-2:] == ["(unseen)", "(null)"]
    assert internet["shares"]["live"][-2] == pytest.approx(200 / 600)


def test_thresholds_shrink_with_the_window_and_keep_a_floor(ref):
    spec = next(f for f in ref["features"] if f["name"] == "age")
    from deploykit._monitor.stats import calibrate

    small, medium, huge = (calibrate(spec, n, ref["alpha"])["ks"] for n in (30, 600, 1_000_000))
    assert small > medium > huge > 0
    # the reference is a 3000-row sample: even a huge window cannot go below its own noise
    assert huge > 1.0 / np.sqrt(3000)
