"""/explain off the event loop, against a real `bentoml serve` of a model explained by Kernel SHAP (issue 13):
a cost budget per request, /livez, /readyz and /predict answering while an explanation runs, and a
deadline that ends in a 503 with Retry-After."""

import math
import statistics
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit._schema import records

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def kernel():
    from sklearn.datasets import make_classification
    from sklearn.neighbors import KNeighborsClassifier

    X, y = make_classification(700, 8, n_informative=5, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
    model = KNeighborsClassifier(15).fit(X[:500], y[:500])
    pkg = deploykit.package(model, name="kernel", X_train=X[:500], y_train=pd.Series(y[:500]), X_test=X[500:],
                            y_test=pd.Series(y[500:]), fast_path=False, limits={"explain_seconds": 20}, verbose=False)
    assert pkg.explainer == "shap.KernelExplainer"
    return pkg, X[500:]


@pytest.fixture(scope="module")
def served(kernel):
    dep = deploykit.deploy(kernel[0], name="kernel", verbose=False)
    yield dep
    dep.stop()


def _rows(kernel, seconds: float) -> list:
    pkg, X = kernel
    n = math.ceil(seconds / pkg.manifest["explainer"]["seconds_per_row"])
    return records(pd.concat([X] * (n // len(X) + 1)).iloc[:n])


def test_a_request_over_the_cost_budget_is_refused_at_once_saying_how_to_raise_it(served, kernel):
    per_row = kernel[0].manifest["explainer"]["seconds_per_row"]
    rows = _rows(kernel, 21)
    started = time.perf_counter()
    response = httpx.post(served.url + "/explain", json={"instances": rows}, timeout=60)
    assert response.status_code == 413 and time.perf_counter() - started < 5
    error = response.json()["error"]
    assert f"explaining {len(rows)} rows would take about" in error and "budget of 20 s" in error
    assert f"at most {int(20 / per_row)} rows" in error and "limits={'explain_seconds':" in error


def _probe(url: str, path: str, stop: threading.Event, out: list, body=None) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post(url + path, json=body) if body else client.get(url + path)
            out.append((response.status_code, (time.perf_counter() - started) * 1e3))
            time.sleep(0.05)


def test_health_and_predict_answer_while_a_long_explanation_runs(served, kernel):
    rows = _rows(kernel, 4)
    httpx.post(served.url + "/explain", json={"instances": rows[:1]}, timeout=60)  # SHAP loaded: not the thing measured
    stop, seen = threading.Event(), {"/livez": [], "/readyz": [], "/predict": []}
    probes = [threading.Thread(target=_probe, args=(served.url, path, stop, out, {"instances": rows[:1]} if path == "/predict" else None))
              for path, out in seen.items()]
    for probe in probes:
        probe.start()
    started = time.perf_counter()
    response = httpx.post(served.url + "/explain", json={"instances": rows}, timeout=120)
    took = time.perf_counter() - started
    stop.set()
    for probe in probes:
        probe.join()
    assert response.status_code == 200 and len(response.json()["values"]) == len(rows) and took >= 2
    for path, answers in seen.items():
        assert answers and all(status == 200 for status, _ in answers), path
    for path in ("/livez", "/readyz"):
        times = sorted(ms for _, ms in seen[path])
        p90 = times[int(0.9 * (len(times) - 1))]
        # inline, these took as long as the explanation (20-31 s for 1,000 rows)
        assert statistics.median(times) <= 50 and p90 <= 50, (path, times)
    assert len(seen["/predict"]) >= 10  # /predict kept serving


def test_a_request_past_its_deadline_gets_a_503_with_retry_after_and_the_worker_is_freed(kernel, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_LIMITS", '{"explain_deadline_seconds": 1.5}')
    dep = deploykit.deploy(kernel[0], name="kernel-deadline", verbose=False)
    try:
        rows = _rows(kernel, 8)
        httpx.post(dep.url + "/explain", json={"instances": rows[:1]}, timeout=60)
        started = time.perf_counter()
        response = httpx.post(dep.url + "/explain", json={"instances": rows}, timeout=60)
        assert response.status_code == 503 and time.perf_counter() - started < 6
        assert int(response.headers["retry-after"]) >= 1 and "deadline of 1.5 s" in response.json()["error"]
        started = time.perf_counter()
        after = httpx.post(dep.url + "/explain", json={"instances": rows[:1]}, timeout=60)
        assert after.status_code == 200 and time.perf_counter() - started < 5  # the abandoned one stopped, not ran on
        assert np.isfinite(np.asarray(after.json()["values"])).all()
    finally:
        dep.stop()
