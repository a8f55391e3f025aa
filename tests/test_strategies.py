"""Release strategies on the local target, with real `bentoml serve` versions under checked load:
shadow, canary (fixed, and one whose candidate errors), A/B with sticky assignment, promote and rollback."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import httpx
import numpy as np
import pytest

import deploykit
from deploykit._front.strategy import assigned_to_candidate, normalise, StrategyError
from tests.helpers.load import Hammer

pytestmark = pytest.mark.serve

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]


@pytest.fixture(scope="module")
def pair(churn):
    """Two versions of 'exp' whose models disagree on part of the rows sent."""
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, y_test = churn[0][NUMERIC], churn[1][NUMERIC], churn[2], churn[3]
    made = []
    for depth in (2, 8):
        model = RandomForestClassifier(n_estimators=10, max_depth=depth, random_state=1).fit(X_train, y_train)
        made.append((deploykit.package(model, name="exp", X_train=X_train, y_train=y_train, X_test=X_test,
                                       y_test=y_test, verbose=False), model))
    rows = X_test.iloc[:10]
    agreement = float(np.mean(made[0][1].predict(rows) == made[1][1].predict(rows)))
    assert 0 < agreement < 1
    return made, rows, agreement


def _stop(name: str) -> None:
    for dep in deploykit.deployments():
        if dep.name == name:
            dep.stop()


def _binomial_bounds(n: int, p: float, z: float = 2.576) -> tuple[float, float]:
    spread = z * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_shadow_answers_from_live_mirrors_pairs_and_promotes(pair):
    (v1, m1), (v2, m2), rows, agreement = (*pair[0], pair[1], pair[2])
    instances = rows.to_dict(orient="records")
    expected = {v1.version: m1.predict(rows).tolist(), v2.version: m2.predict(rows).tolist()}
    live = deploykit.deploy(v1, name="shadowed", verbose=False)
    try:
        shadowed = deploykit.deploy(v2, name="shadowed", strategy="shadow", verbose=False)
        assert shadowed.url == live.url and shadowed.version == v1.version and shadowed.candidate == v2.version
        with Hammer(live.url, instances, expected={v1.version: expected[v1.version]}, threads=1) as load:
            load.wait_for(300)
        assert load.failed == 0, load.errors[:3]
        assert set(load.versions) == {v1.version}  # clients only ever get the live version's answer
        report = shadowed.compare()
        d = report.to_dict()
        assert d["strategy"] == "shadow" and set(d["variants"]) == {"live", "candidate"}
        assert d["variants"]["live"]["version"] == v1.version and d["variants"]["candidate"]["version"] == v2.version
        assert d["paired"]["requests"] >= 0.95 * load.ok  # mirrored and paired
        assert d["paired"]["agreement"] == pytest.approx(agreement, abs=1e-12)  # what the models give in-process
        assert d["variants"]["live"]["requests"] >= load.ok and d["variants"]["candidate"]["mirrored"]["requests"] > 0
        assert "shadow" in str(report) and "agreement" in report._repr_html_()
        metrics = httpx.get(f"{live.url}/metrics").text
        assert f'name="shadowed",version="{v2.version}",variant="candidate"' in metrics

        with Hammer(live.url, instances, expected=expected, threads=2) as load:
            promoted = deploykit.promote("shadowed", verbose=False)
            load.wait_for(load.ok + 30)
        assert load.failed == 0, load.errors[:3]
        assert load.versions[-1] == v2.version and promoted.version == v2.version and promoted.candidate is None
        assert [e["action"] for e in promoted.compare().to_dict()["events"]][-1] == "promote"
    finally:
        _stop("shadowed")


def test_a_fixed_canary_answers_its_share(pair):
    (v1, _), (v2, _), rows = (*pair[0], pair[1])
    deploykit.deploy(v1, name="canary30", verbose=False)
    try:
        dep = deploykit.deploy(v2, name="canary30", strategy="canary", traffic=0.3, verbose=False)
        sent = 600
        variants = []
        with httpx.Client(base_url=dep.url, timeout=30) as client:
            for _ in range(sent):
                answer = client.post("/predict", json={"instances": rows.iloc[:1].to_dict(orient="records")})
                assert answer.status_code == 200
                variants.append(answer.headers["x-deploykit-variant"])
                version = answer.headers["x-deploykit-version"]
                assert version == (v2.version if variants[-1] == "candidate" else v1.version)
        low, high = _binomial_bounds(sent, 0.3)
        assert low <= variants.count("candidate") <= high, variants.count("candidate")
        rolled = deploykit.rollback("canary30", verbose=False)
        assert rolled.version == v1.version and rolled.candidate is None
        assert rolled.compare().to_dict()["events"][-1]["action"] == "rollback"
    finally:
        _stop("canary30")


def test_a_canary_that_errors_is_rolled_back_and_no_client_fails(churn):
    from sklearn.ensemble import RandomForestClassifier

    from tests.helpers.custom import FailsAbove

    X_train, X_test, y_train, y_test = churn[0][NUMERIC], churn[1][NUMERIC], churn[2], churn[3]
    good = RandomForestClassifier(n_estimators=8, max_depth=3, random_state=0).fit(X_train, y_train)
    bad = FailsAbove(column="age", limit=70).fit(X_train, y_train)
    calm = X_test[X_test["age"] <= 70]
    v1 = deploykit.package(good, name="flaky", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, verbose=False)
    v2 = deploykit.package(bad, name="flaky", X_train=X_train, y_train=y_train, X_test=calm, y_test=y_test[calm.index],
                           explain=False, verbose=False)
    deploykit.deploy(v1, name="flaky", verbose=False)
    try:
        dep = deploykit.deploy(v2, name="flaky", strategy="canary", traffic=0.5,
                               guardrails={"error_rate": 0.01, "min_requests": 20}, verbose=False)
        mixed = X_test.iloc[:40].to_dict(orient="records")  # some rows have age > 70: the candidate fails on them
        assert any(row["age"] > 70 for row in mixed)
        with Hammer(dep.url, mixed[:4], threads=2) as load:
            load.wait_for(400)
        assert load.failed == 0, load.errors[:3]  # a failing candidate's requests were answered by live
        report = dep.compare().to_dict()
        assert report["guardrail"] and "error rate" in report["guardrail"]["reason"]
        assert dep.front.routes()["candidate"] is None
        assert set(load.versions[-50:]) == {v1.version}
        assert [e["action"] for e in report["events"]][:2] == ["start", "guardrail"]
    finally:
        _stop("flaky")


def test_ab_assignment_is_sticky_and_split(pair):
    (v1, _), (v2, _), rows = (*pair[0], pair[1])
    deploykit.deploy(v1, name="abtest", verbose=False)
    try:
        dep = deploykit.deploy(v2, name="abtest", strategy="ab", traffic=0.5, sticky="customer_id", verbose=False)
        row = rows.iloc[:1].to_dict(orient="records")[0]
        seen: dict[str, set] = {}
        with httpx.Client(base_url=dep.url, timeout=30) as client:
            for unit in range(120):
                for _ in range(3):  # by a field the model does not take (removed before forwarding) ...
                    answer = client.post("/predict", json={"instances": [{**row, "customer_id": f"c{unit}"}]})
                    assert answer.status_code == 200, answer.text
                    seen.setdefault(f"c{unit}", set()).add(answer.headers["x-deploykit-variant"])
                answer = client.post("/predict", json={"instances": [row]}, headers={"x-deploykit-unit": f"c{unit}"})
                seen[f"c{unit}"].add(answer.headers["x-deploykit-variant"])  # ... or by header: the same unit
        assert all(len(variants) == 1 for variants in seen.values())
        experiment = dep.front.routes()["strategy"]["experiment"]
        for unit, variants in seen.items():
            expected = "candidate" if assigned_to_candidate(experiment, unit, 0.5) else "live"
            assert variants == {expected}
        low, high = _binomial_bounds(len(seen), 0.5)
        assert low <= sum(v == {"candidate"} for v in seen.values()) <= high
    finally:
        _stop("abtest")


def test_assignment_is_sha256_not_hash_and_settings_are_checked():
    digest = int.from_bytes(hashlib.sha256(b"exp:42").digest()[:8], "big")
    assert assigned_to_candidate("exp", "42", 0.5) == (digest % 10_000 < 5_000)
    code = "from deploykit._front.strategy import assigned_to_candidate as a; print([a('e', str(u), 0.3) for u in range(50)])"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1  # the same in every process, whatever Python's hash seed
    for bad, message in (({"kind": "canary", "steps": [0.5, 0.2]}, "must rise and end at 1.0"),
                         ({"kind": "shadow", "sample": 2}, "between 0 and 1"), ({"kind": "ab"}, "experiment name"),
                         ({"kind": "canary", "guardrails": {"latency": 1}}, "unknown guardrails")):
        with pytest.raises(StrategyError, match=message):
            normalise(bad)
    with pytest.raises(deploykit.ConfigError, match="do not apply to strategy='shadow'"):
        deploykit.deploy(object(), name="x", strategy="shadow", traffic=0.2)
