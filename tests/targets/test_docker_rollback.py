"""Rollback and log following on the docker target, against a real Docker engine."""

from __future__ import annotations

import threading

import pytest

import deploykit
from deploykit._cli import main

pytestmark = pytest.mark.docker

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]


def _collect(iterator, into: list, first: threading.Event) -> None:
    for line in iterator:
        into.append(line)
        first.set()


def test_rollback_keeps_the_url_and_followed_logs_end_with_the_container(churn, base_image, docker_engine, capsys):
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, y_test = churn[0][NUMERIC], churn[1][NUMERIC], churn[2], churn[3]
    made = []
    for depth in (1, 6):
        model = RandomForestClassifier(n_estimators=8, max_depth=depth, random_state=0).fit(X_train, y_train)
        made.append((deploykit.package(model, name="rbd", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                                       verbose=False), model))
    rows = X_test.iloc[:40]
    try:
        first = deploykit.deploy(made[0][0], target="docker", name="rbd", verbose=False)
        second = deploykit.deploy(made[1][0], target="docker", name="rbd", verbose=False)
        assert second.url == first.url and second.predict(rows).tolist() == made[1][1].predict(rows).tolist()

        assert main(["logs", "rbd", "--tail", "2"]) == 0
        assert capsys.readouterr().out.splitlines() == second.logs(2).splitlines()
        followed, started = [], threading.Event()
        follower = threading.Thread(target=_collect, args=(second.follow_logs(tail=1), followed, started), daemon=True)
        follower.start()
        assert started.wait(60) and followed[0] == second.logs(1).strip()

        back = deploykit.rollback("rbd", verbose=False)
        assert (back.version, back.target, back.url) == ("1", "docker", first.url)
        assert back.predict(rows).tolist() == made[0][1].predict(rows).tolist()
        follower.join(60)
        assert not follower.is_alive()  # v2's container is gone, so following its log ended by itself
        models = docker_engine.containers.list(filters={"label": ["ai.deploykit.name=rbd", "ai.deploykit.role=model"]})
        assert [c.id for c in models] == [back.handle.container.id]
    finally:
        for dep in deploykit.deployments():
            if dep.name == "rbd":
                dep.stop()
