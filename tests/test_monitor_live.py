"""Monitoring against a live local deployment: capture through the front, drift on held-out and shifted
traffic, outcomes, the Prometheus series scraped by a real Prometheus, and capture turned off."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import numpy as np
import pytest

import deploykit
from deploykit import _paths, _templates
from tests.conftest import require

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def watched():
    """A churn model trained on 1,500 rows and deployed, with 1,500 held-out rows to send it."""
    from deploykit.demo import churn_pipeline, make_churn

    X, y = make_churn(n=3000, seed=3)
    X_train, X_test, y_train, y_test = X[:1500], X[1500:].reset_index(drop=True), y[:1500], y[1500:].reset_index(drop=True)
    model = churn_pipeline().set_params(model__n_estimators=20, model__max_depth=6).fit(X_train, y_train)
    dep = deploykit.deploy(model, name="watched", X_train=X_train, y_train=y_train, X_test=X_test[:300],
                           y_test=y_test[:300], verbose=False)
    yield dep, model, X_test, y_test
    dep.stop()


def _send(url: str, frame, size: int = 50) -> list[str]:
    """Send ``frame`` in requests of ``size`` rows; return each request's x-request-id."""
    ids = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(frame), size):
            rows = frame.iloc[start:start + size].astype(object).where(frame.iloc[start:start + size].notna(), None)
            answer = client.post("/predict", json={"instances": rows.to_dict(orient="records")})
            assert answer.status_code == 200, answer.text
            ids.append(answer.headers["x-request-id"])
    return ids


def _settle(dep, rows: int, timeout: float = 30.0) -> None:
    """Wait until the capture writer has written ``rows`` rows (it writes off the request path)."""
    from deploykit._monitor.store import CaptureStore

    store = CaptureStore(_paths.deployment_dir(dep.name))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(store.rows(rows)) >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"capture did not reach {rows} rows")


def test_held_out_traffic_shows_no_drift_and_shifted_traffic_drifts_on_its_feature(watched):
    dep, model, X_test, _ = watched
    _send(dep.url, X_test.iloc[:600])
    _settle(dep, 600)
    calm = dep.monitor(600).to_dict()
    assert calm["window"]["rows"] == 600 and calm["status"] == "ok"
    assert not calm["verdict"]["drift"], calm["verdict"]
    assert not [f for f in calm["features"] if f["drifted"]]

    shifted = X_test.iloc[600:1200].copy()
    shifted["monthly_charges"] += 1.5 * X_test["monthly_charges"].std()
    _send(dep.url, shifted)
    _settle(dep, 1200)
    report = dep.monitor(600)
    d = report.to_dict()
    drifted = {f["name"] for f in d["features"] if f["drifted"]}
    assert drifted == {"monthly_charges"}, d["features"]
    assert any("monthly_charges" in reason for reason in d["verdict"]["reasons"]) or not d["verdict"]["drift"]
    assert set(d) >= {"window", "features", "prediction", "verdict", "performance"}
    assert {"rows", "start", "end"} <= set(d["window"]) and "drifted" in d["prediction"]
    assert "monthly_charges" in report._repr_html_() and "monthly_charges" in str(report)
    assert 'deploykit_drift_detected{name="watched"' in httpx.get(f"{dep.url}/metrics").text  # written for the front


def test_logged_outcomes_give_the_in_process_accuracy(watched):
    dep, model, X_test, y_test = watched
    rows = X_test.iloc[1200:1400]
    ids = _send(dep.url, rows, size=1)
    assert len(set(ids)) == len(ids) == 200
    assert dep.log_outcomes(ids[:100], y_test.iloc[1200:1300].tolist()) == 100
    answer = httpx.post(f"{dep.url}/outcomes", json={"request_ids": ids[100:], "y_true": y_test.iloc[1300:1400].tolist()})
    assert answer.status_code == 200 and answer.json() == {"accepted": 100}
    bad = httpx.post(f"{dep.url}/outcomes", json={"request_ids": ids[:2], "y_true": [1]})
    assert bad.status_code == 400 and "one label per id" in bad.json()["error"]
    _settle(dep, 1400)
    performance = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the front writes outcomes off the request path too
        performance = dep.monitor(200).to_dict()["performance"]
        if performance and performance["rows"] == 200:
            break
        time.sleep(0.3)
    accuracy = next(m for m in performance["metrics"] if m["name"] == "accuracy")
    expected = float(np.mean(model.predict(rows) == y_test.iloc[1200:1400].to_numpy()))
    assert performance["rows"] == 200 and accuracy["value"] == pytest.approx(expected, abs=1e-12)
    assert accuracy["low"] <= accuracy["value"] <= accuracy["high"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_prometheus_scrapes_the_series_and_accepts_the_rules(watched, tmp_path):
    prometheus = shutil.which("prometheus")
    require(prometheus is not None, "Prometheus", "apt-get install prometheus (`.ci/run` does)")
    dep = watched[0]
    _send(dep.url, watched[2].iloc[:50])
    rules = _templates.path("monitoring/alerts.yml")
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    port = _free_port()
    target = dep.url.split("//")[1]
    (tmp_path / "prometheus.yml").write_text(
        f"global: {{scrape_interval: 1s}}\nrule_files: ['{rules}']\n"
        f"scrape_configs: [{{job_name: deploykit, static_configs: [{{targets: ['{target}']}}]}}]\n")
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(found) < 3:
            for series in ("deploykit_requests_total", "deploykit_request_duration_seconds_count",
                           "deploykit_capture_dropped_total"):
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": series})
                except httpx.HTTPError:
                    continue
                if answer.status_code != 200:  # 503 "Service Unavailable" while Prometheus opens its storage
                    continue
                result = answer.json()
                if result.get("data", {}).get("result"):
                    found[series] = result["data"]["result"]
            time.sleep(1)
        assert len(found) == 3, sorted(found)
        labels = found["deploykit_requests_total"][0]["metric"]
        assert labels["name"] == "watched" and labels["variant"] == "live" and labels["version"] == dep.version
        loaded = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules").json()["data"]["groups"]
        assert loaded and all(rule["health"] != "err" for group in loaded for rule in group["rules"])
    finally:
        proc.terminate()
        proc.wait(10)


def test_capture_off_records_nothing(churn_package):
    dep = deploykit.deploy(churn_package, name="unwatched", capture=0, verbose=False)
    try:
        rows = churn_package.sample_rows()
        answer = httpx.post(f"{dep.url}/predict", json={"instances": rows})
        assert answer.status_code == 200 and answer.headers["x-request-id"]
        refused = httpx.post(f"{dep.url}/outcomes", json={"request_ids": [answer.headers["x-request-id"]], "y_true": [1]})
        assert refused.status_code == 409 and "capture is off" in refused.json()["error"]
        assert not (_paths.deployment_dir("unwatched") / "capture.sqlite").exists()
        with pytest.raises(deploykit.ConfigError, match="capture=2"):
            deploykit.deploy(churn_package, name="unwatched", capture=2, verbose=False)
    finally:
        dep.stop()
