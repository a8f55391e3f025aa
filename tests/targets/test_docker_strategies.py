"""Release strategies on the docker target, against a real Docker engine, under load with every answer
checked: a shadow (clients only ever get live's answer, copies are paired), its promotion, then a canary
that shares the traffic and its rollback, all without one failed request and on one URL."""

from __future__ import annotations

import numpy as np
import pytest

import deploykit
from tests.helpers.load import Hammer

pytestmark = pytest.mark.docker

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]


def test_shadow_promote_then_canary_and_rollback_on_docker(churn, base_image, docker_engine):
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, y_test = churn[0][NUMERIC], churn[1][NUMERIC], churn[2], churn[3]
    made = []
    for depth in (2, 8):  # two versions whose models disagree on part of the rows sent
        model = RandomForestClassifier(n_estimators=10, max_depth=depth, random_state=1).fit(X_train, y_train)
        made.append((deploykit.package(model, name="dkexp", X_train=X_train, y_train=y_train, X_test=X_test,
                                       y_test=y_test, verbose=False), model))
    (v1, m1), (v2, m2) = made
    rows = X_test.iloc[:10]
    instances = rows.to_dict(orient="records")
    expected = {v1.version: m1.predict(rows).tolist(), v2.version: m2.predict(rows).tolist()}
    assert expected[v1.version] != expected[v2.version]
    try:
        live = deploykit.deploy(v1, target="docker", name="dkexp", verbose=False)
        shadowed = deploykit.deploy(v2, target="docker", name="dkexp", strategy="shadow", verbose=False)
        assert shadowed.url == live.url and shadowed.version == v1.version and shadowed.candidate == v2.version
        with Hammer(live.url, instances, expected={v1.version: expected[v1.version]}, threads=2) as load:
            load.wait_for(200)
        assert load.failed == 0, load.errors[:3]
        assert set(load.versions) == {v1.version}  # the shadow never answers a client
        report = shadowed.compare().to_dict()
        assert report["strategy"] == "shadow" and report["paired"]["requests"] >= 0.9 * load.ok
        agreement = float(np.mean(np.asarray(expected[v1.version]) == np.asarray(expected[v2.version])))
        assert report["paired"]["agreement"] == pytest.approx(agreement, abs=1e-12)  # what the models give in-process

        with Hammer(live.url, instances, expected=expected, threads=2) as load:
            promoted = deploykit.promote("dkexp", verbose=False)
            load.wait_for(load.ok + 30)
        assert load.failed == 0, load.errors[:3]
        assert promoted.version == v2.version and promoted.candidate is None and load.versions[-1] == v2.version

        canary = deploykit.deploy(v1, target="docker", name="dkexp", strategy="canary", traffic=0.5, verbose=False)
        assert canary.url == live.url and canary.candidate == v1.version
        with Hammer(live.url, instances, expected=expected, threads=2) as load:
            load.wait_for(200)
            assert {v1.version, v2.version} <= set(load.versions)  # both answer, each with its own model's labels
            rolled = deploykit.rollback("dkexp", verbose=False)
            load.wait_for(load.ok + 30)
        assert load.failed == 0, load.errors[:3]
        assert rolled.version == v2.version and rolled.candidate is None
        assert set(load.versions[-20:]) == {v2.version}
        assert [e["action"] for e in rolled.compare().to_dict()["events"]][-1] == "rollback"
    finally:
        for dep in deploykit.deployments():
            if dep.name == "dkexp":
                dep.stop()
