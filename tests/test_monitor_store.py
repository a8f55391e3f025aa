"""The capture writer (as the front runs it) and the host-side store, report and outcomes, on real SQLite."""

from __future__ import annotations

import json
import multiprocessing
import time

import numpy as np
import pandas as pd
import pytest

from deploykit._front.capture import CaptureWriter, Retention, outcome_rows, parse_outcomes_body
from deploykit._monitor.report import monitor
from deploykit._monitor.store import CaptureStore
from deploykit._schema import records
from deploykit.exceptions import ConfigError

from tests.test_monitor_drift import data, live, ref  # noqa: F401 - shared fixtures


def body(rows: list[dict]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def capture_frame(writer: CaptureWriter, frame: pd.DataFrame, predictions, start: float, prefix: str = "r") -> list[str]:
    ids = []
    for i, (row, label) in enumerate(zip(records(frame), predictions)):
        ids.append(f"{prefix}{i}")
        writer.record(ids[-1], start + i, "1", "live", "/predict", 200, body([row]),
                      json.dumps({"predictions": [int(label)]}).encode())
    assert writer.flush()
    return ids


def test_multi_row_requests_give_one_row_per_instance(tmp_path):
    writer = CaptureWriter(tmp_path, "t")
    assert writer.record("a", 1.0, "1", "live", "/predict_proba", 200, body([{"x": 1}, {"x": 2.5}]),
                         b'{"probabilities": [[0.9, 0.1], [0.2, 0.8]], "classes": ["no", "yes"]}')
    assert writer.record("b", 2.0, "1", "live", "/predict", 422, b"{not json", b"{}")
    assert not writer.record("c", 3.0, "1", "live", "/schema", 200, b"", b"")  # not a model endpoint
    writer.close()
    store = CaptureStore(tmp_path)
    rows = store.rows()
    assert rows[["request_id", "row", "x", "prediction"]].values.tolist() == [["a", 0, 1, "no"], ["a", 1, 2.5, "yes"]]
    assert json.loads(rows["probabilities"][1]) == [0.2, 0.8]
    everything = store.rows(answered=False)
    assert everything["status"].tolist() == [200, 200, 422]


def test_a_full_queue_drops_and_counts(tmp_path):
    writer = CaptureWriter(tmp_path, "t", queue_size=5, interval=5.0)
    writer._closing.wait(0.05)  # the thread's first pass is done; it sleeps `interval` before the next
    accepted = [writer.record(f"r{i}", 1.0, "1", "live", "/predict", 200, body([{"x": i}]), b'{"predictions": [0]}')
                for i in range(20)]
    assert sum(accepted) == 5 and writer.dropped == 15
    writer.close()
    assert CaptureStore(tmp_path).count() == 5


def test_fraction_zero_captures_nothing_and_fraction_samples(tmp_path):
    off = CaptureWriter(tmp_path / "off", "t", fraction=0)
    assert not off.record("a", 1.0, "1", "live", "/predict", 200, body([{"x": 1}]), b"{}")
    assert not (tmp_path / "off").exists()
    half = CaptureWriter(tmp_path / "half", "t", fraction=0.5)
    kept = sum(half.record(f"r{i}", 1.0, "1", "live", "/predict", 200, body([{"x": 1}]), b"{}") for i in range(2000))
    half.close()
    assert 850 < kept < 1150  # Binomial(2000, 0.5): 6 standard deviations either side
    with pytest.raises(ValueError, match="between 0"):
        CaptureWriter(tmp_path, "t", fraction=1.5)


def _reader(path: str, ready, queue) -> None:
    store = CaptureStore(path)
    ready.set()
    counts, deadline = [], time.monotonic() + 30
    while (not counts or counts[-1] < 2001) and time.monotonic() < deadline:
        counts.append(store.count())
        time.sleep(0.01)
    queue.put(counts)


def test_a_reader_process_reads_while_the_front_writes(tmp_path):
    writer = CaptureWriter(tmp_path, "t", interval=0.01)
    writer.record("first", 1.0, "1", "live", "/predict", 200, body([{"x": 0}]), b'{"predictions": [0]}')
    writer.flush()
    spawn = multiprocessing.get_context("spawn")
    ready, queue = spawn.Event(), spawn.Queue()
    reader = spawn.Process(target=_reader, args=(str(tmp_path), ready, queue))
    reader.start()
    assert ready.wait(60)
    for i in range(2000):
        writer.record(f"r{i}", 2.0 + i, "1", "live", "/predict", 200, body([{"x": i}]), b'{"predictions": [1]}')
        if i % 50 == 0:
            time.sleep(0.01)  # spread the writes over about half a second
    counts = queue.get(timeout=60)
    reader.join(30)
    writer.close()
    assert reader.exitcode == 0
    assert counts == sorted(counts) and counts[-1] == 2001
    assert len(set(counts)) > 2  # it saw rows arrive while the writer was writing


def test_windows_by_count_and_time_and_retention(tmp_path):
    writer = CaptureWriter(tmp_path, "t")
    now = time.time()
    for i in range(100):
        writer.record(f"r{i}", now - 100 + i, "1", "live", "/predict", 200, body([{"x": i}]), b'{"predictions": [0]}')
    writer.close()
    store = CaptureStore(tmp_path)
    assert store.rows(10)["x"].tolist() == list(range(90, 100))
    assert len(store.rows("30s")) in (29, 30, 31)
    assert store.rows((now - 50, now - 40))["x"].tolist() == list(range(50, 60))
    assert store.enforce_retention(40) == 60 and store.count() == 40
    assert store.enforce_retention({"max_age": "20s"}) >= 19
    assert Retention.parse("30d").max_age == 30 * 86400
    with pytest.raises(ConfigError, match="window"):
        store.rows("soon")


def test_outcome_addressing():
    assert outcome_rows(["a", "b#2", ("c", 1), "d"], [1, 0, 1, [0, 1]]) == [
        ("a", 0, 1), ("b", 2, 0), ("c", 1, 1), ("d", 0, 0), ("d", 1, 1)]
    assert parse_outcomes_body(b'{"request_ids": ["x#3"], "y_true": ["yes"]}') == [("x", 3, "yes")]
    with pytest.raises(ValueError, match="one label per id"):
        outcome_rows(["a"], [1, 2])


def test_logged_outcomes_give_the_in_process_accuracy(tmp_path, ref, data):  # noqa: F811
    model, held_out, y = data["model"], data["held_out"], data["y_held_out"]
    predictions = model.predict(held_out)
    writer = CaptureWriter(tmp_path, "churn")
    ids = capture_frame(writer, held_out, predictions, time.time() - 1000)
    writer.close()
    store = CaptureStore(tmp_path)
    assert store.log_outcomes(np.array(ids), y.to_numpy()) == 600
    report = monitor(ref, store, window=600)
    accuracy = next(m for m in report.to_dict()["performance"]["metrics"] if m["name"] == "accuracy")
    assert accuracy["value"] == pytest.approx(float(np.mean(predictions == y.to_numpy())))
    assert accuracy["low"] < accuracy["value"] < accuracy["high"]
    groups = {g["group"] for g in report.performance["by_group"] if g["feature"] == "contract"}
    assert groups == {"month-to-month", "one-year", "two-year"}


def test_report_contract_text_prometheus_html_and_parquet(tmp_path, ref, data):  # noqa: F811
    shifted = data["held_out"].copy()
    shifted["tenure_months"] += 1.5 * data["train"]["tenure_months"].std()
    writer = CaptureWriter(tmp_path, "churn")
    capture_frame(writer, shifted, data["model"].predict(shifted), time.time() - 1000)
    writer.close()
    report = monitor(ref, tmp_path, window=600)
    d = report.to_dict()
    assert set(d["window"]) >= {"rows", "start", "end"} and d["window"]["rows"] == 600
    assert set(d["features"][0]) >= {"name", "test", "value", "threshold", "drifted"}
    assert set(d["prediction"]) >= {"drifted"} and set(d["verdict"]) >= {"drift", "reasons"}
    assert d["performance"] is None and d["verdict"]["drift"] is True
    json.dumps(d)  # JSON-ready
    assert "tenure_months" in report.to_text() and "DRIFT" in str(report)
    prom = report.to_prometheus()
    assert 'deploykit_drift_verdict{name="churn",version="1"} 1' in prom
    assert 'deploykit_drift_detected{name="churn",version="1",feature="tenure_months"} 1' in prom
    assert "deploykit_prediction_share{" in prom
    html = report._repr_html_()
    assert html.index("tenure_months") < html.index("monthly_charges") and "<svg" in html
    files = CaptureStore(tmp_path).export_parquet(tmp_path / "out.parquet")
    assert pd.read_parquet(files[0]).shape[0] == 600
    assert monitor(ref, tmp_path, window=20).to_dict()["status"] == "insufficient data"
