"""What makes a report on a large window fast, on real SQLite: the typed column reader, the outcomes
joined by request id, the binning of categorical columns, and thresholds reused from the reference."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import pytest

from deploykit._front.capture import CaptureWriter
from deploykit._monitor import stats
from deploykit._monitor.drift import drift, live_counts
from deploykit._monitor.report import MODEL_ENDPOINTS, monitor, read_kinds
from deploykit._monitor import store as store_module
from deploykit._monitor.store import CaptureStore

from tests.test_monitor_drift import data, live, ref  # noqa: F401 - shared fixtures
from tests.test_monitor_store import body, capture_frame


@pytest.fixture(params=["adbc", "sqlite3"])
def reader(request, monkeypatch):
    """Both ways the store reads: the ADBC driver into Arrow, and the standard library without it."""
    if request.param == "sqlite3":
        monkeypatch.setitem(sys.modules, "adbc_driver_sqlite.dbapi", None)  # import fails: the fallback reads
    else:
        pytest.importorskip("adbc_driver_sqlite.dbapi")

        def no_fallback(*args, **kwargs):
            raise AssertionError("ADBC could not read this: the store fell back to the standard library")

        monkeypatch.setattr(store_module.pd, "read_sql_query", no_fallback)
    return request.param


@pytest.fixture
def captured(tmp_path, data):  # noqa: F811
    """The 600 held-out rows captured as single-row /predict requests, oldest first."""
    writer = CaptureWriter(tmp_path, "churn")
    predictions = data["model"].predict(data["held_out"])
    ids = capture_frame(writer, data["held_out"], predictions, time.time() - 1000)
    writer.close()
    return CaptureStore(tmp_path), ids, predictions


def test_columns_reads_only_what_is_named_typed_and_oldest_first(captured, ref, data, reader):  # noqa: F811
    store, _, predictions = captured
    kinds = read_kinds(ref)
    frame = store.columns(100, ["age", "contract", "total_charges", "prediction", "never captured"], kinds=kinds)
    assert list(frame.columns) == ["seq", "time", "age", "contract", "total_charges", "prediction"]
    assert frame["age"].dtype == "float64" and frame["total_charges"].dtype == "float64"
    assert isinstance(frame["contract"].dtype, pd.CategoricalDtype) and isinstance(frame["prediction"].dtype, pd.CategoricalDtype)
    held_out = data["held_out"].iloc[500:]
    assert frame["seq"].is_monotonic_increasing and frame["time"].is_monotonic_increasing
    assert frame["age"].tolist() == held_out["age"].astype(float).tolist()
    assert frame["contract"].astype(object).tolist() == held_out["contract"].tolist()
    np.testing.assert_array_equal(frame["total_charges"].isna(), held_out["total_charges"].isna())
    assert frame["prediction"].astype(object).tolist() == [str(p) for p in predictions[500:]]


def test_a_column_null_in_its_first_rows_keeps_its_type(tmp_path, reader):
    """ADBC types a column by the rows it reads first: one batch for the whole result keeps a column that
    starts null (added to the capture late) numeric instead of failing over to the slow reader."""
    writer = CaptureWriter(tmp_path, "t")
    for i in range(3000):
        instance = {"x": i} if i < 1500 else {"x": i, "late": i * 0.5}
        writer.record(f"r{i}", float(i), "1", "live", "/predict", 200, body([instance]), b'{"predictions": [0]}')
    writer.close()
    frame = CaptureStore(tmp_path).columns(None, ["x", "late"], kinds={"x": "numeric", "late": "numeric"})
    assert frame["late"].dtype == "float64" and frame["late"].isna().sum() == 1500
    assert frame["late"].iloc[-1] == 2999 * 0.5


def test_the_window_counts_model_answers_only(tmp_path, reader):
    writer = CaptureWriter(tmp_path, "t")
    for i in range(40):
        endpoint = "/explain" if i % 4 == 3 else "/predict"
        writer.record(f"r{i}", float(i), "1", "live", endpoint, 200, body([{"x": i}]), b'{"predictions": [0]}')
    writer.close()
    frame = CaptureStore(tmp_path).columns(10, ["x"], kinds={"x": "numeric"}, endpoints=MODEL_ENDPOINTS)
    assert frame["x"].tolist() == [26, 28, 29, 30, 32, 33, 34, 36, 37, 38]


@pytest.mark.parametrize("logged", [10, 600])  # fewer outcomes than rows, and as many: both join orders
def test_outcomes_are_joined_by_request_id(captured, ref, data, logged, reader):  # noqa: F811
    store, ids, _ = captured
    truth = data["y_held_out"].to_numpy()
    store.log_outcomes(ids[-logged:], truth[-logged:])
    kinds = read_kinds(ref)
    frame = store.columns(300, ["age"], kinds=kinds, outcomes=True)
    labelled = frame["y_true"].notna()
    assert labelled.sum() == min(logged, 300)
    assert frame["y_true"][labelled].astype(object).tolist() == [str(v) for v in truth[-min(logged, 300):]]
    assert frame["outcome_time"][labelled].notna().all() and frame["outcome_time"][~labelled].isna().all()


def test_categorical_columns_count_as_their_text(ref, data):  # noqa: F811
    """The reader's categoricals give the counts the reference's own text labels give, value by value."""
    window = live(data, data["held_out"])
    window.loc[:9, "internet"] = "satellite"
    window.loc[10:14, "contract"] = None
    as_objects = drift(ref, window.astype({c: object for c in ("contract", "internet", "payment_method", "prediction")}))
    as_categories = drift(ref, window.astype({c: "category" for c in ("contract", "internet", "payment_method")})
                          .assign(prediction=window["prediction"].astype(str).astype("category")))
    assert json.dumps(as_objects, sort_keys=True, default=str) == json.dumps(as_categories, sort_keys=True, default=str)
    spec = next(f for f in ref["features"] if f["name"] == "internet")
    counts, unseen = live_counts(spec, window["internet"].astype("category"))
    assert counts.sum() == 600 and counts[-2] == 10 and unseen == [{"value": "satellite", "rows": 10}]


def test_booleans_read_as_text_count_as_the_reference_writes_them():
    spec = {"kind": "boolean", "categories": ["False", "True"]}
    counts, unseen = live_counts(spec, pd.Series(["1", "0", "true", None, "1", "maybe"]).astype("category"))
    assert counts.tolist() == [1, 3, 1, 1] and unseen == [{"value": "maybe", "rows": 1}]


def test_a_report_at_a_packaged_size_reuses_the_references_thresholds(tmp_path, ref, data, monkeypatch):  # noqa: F811
    writer = CaptureWriter(tmp_path, "churn")
    capture_frame(writer, data["held_out"], data["model"].predict(data["held_out"]), time.time() - 1000)
    writer.close()
    stats._CACHE.clear()

    def no_bootstrap(*args):
        raise AssertionError("thresholds were drawn again although the reference holds them")

    monkeypatch.setattr(stats, "_calibrate", no_bootstrap)
    report = monitor(json.loads(json.dumps(ref)), tmp_path, window=600)  # as read back from the package
    age = {t["test"]: t["threshold"] for t in next(f for f in report.drift["features"] if f["name"] == "age")["tests"]}
    assert age == pytest.approx(ref["thresholds"]["600"]["age"], rel=0, abs=0)
    monkeypatch.undo()
    stats._CACHE.clear()
    spec = next(f for f in ref["features"] if f["name"] == "age")
    assert stats.calibrate(spec, 600, ref["alpha"]) == ref["thresholds"]["600"]["age"]  # what reuse stands for
