"""The release layer on the local target, with real `bentoml serve` versions behind a real front.

Under steady load, every response checked against the model of the version that says it answered: a
new version, a refused broken one and a rollback lose no request, and the URL never changes. A local
deployment outlives the process that made it: another process lists, uses and stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import deploykit
from tests.helpers.load import Hammer
from tests.helpers.packages import broken_copy

pytestmark = pytest.mark.serve

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]


@pytest.fixture(scope="module")
def two_versions(churn):
    """Two versions of package 'steady' whose models disagree on the rows sent."""
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, y_test = churn[0][NUMERIC], churn[1][NUMERIC], churn[2], churn[3]
    made = []
    for depth in (1, 6):
        model = RandomForestClassifier(n_estimators=8, max_depth=depth, random_state=0).fit(X_train, y_train)
        made.append((deploykit.package(model, name="steady", X_train=X_train, y_train=y_train, X_test=X_test,
                                       y_test=y_test, verbose=False), model))
    rows = X_test.iloc[:20]
    assert made[0][1].predict(rows).tolist() != made[1][1].predict(rows).tolist()
    return made, rows


def test_replace_refuse_and_rollback_under_load_lose_nothing(two_versions, tmp_path):
    (v1, m1), (v2, m2) = two_versions[0]
    rows = two_versions[1]
    instances = rows.to_dict(orient="records")
    expected = {v1.version: m1.predict(rows).tolist(), v2.version: m2.predict(rows).tolist()}
    first = deploykit.deploy(v1, name="steady", verbose=False)
    url = first.url
    try:
        with Hammer(url, instances, expected=expected) as load:
            second = deploykit.deploy(v2, name="steady", verbose=False)
            load.wait_for(load.ok + 20)
            with pytest.raises(deploykit.DeploymentError, match="IntegrityError"):
                deploykit.deploy(broken_copy(v2, tmp_path / "broken", version="3"), name="steady", verbose=False)
            load.wait_for(load.ok + 20)
            back = deploykit.rollback("steady", verbose=False)
            load.wait_for(load.ok + 20)
        assert load.failed == 0, load.errors[:5]
        assert load.ok > 100 and set(load.versions) == {v1.version, v2.version}
        assert load.versions[0] == v1.version and load.versions[-1] == v1.version  # v1, then v2, then v1 again
        assert second.url == back.url == url and back.version == v1.version
        assert first.stopped and second.stopped and not back.stopped
        # only the rolled-back version runs behind the front now
        versions = back.front.call("GET", "versions")
        assert list(versions) == [back.handle.instance] and versions[back.handle.instance]["routed"]
    finally:
        for dep in deploykit.deployments():
            if dep.name == "steady":
                dep.stop()


def test_a_crashed_version_is_started_again_at_the_same_address(churn_package):
    dep = deploykit.deploy(churn_package, name="phoenix", verbose=False)
    try:
        rows = churn_package.sample_rows()
        expected = dep.predict(rows).tolist()
        from deploykit._front.supervisor import _children_of

        workers = _children_of(dep.handle.pid)  # BentoML's workers: each in a session of its own
        assert workers
        os.killpg(dep.handle.pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the front sees the death, and starts the version again
            info = dep.front.call("GET", "versions")[dep.handle.instance]
            if info["restarts"] == 1 and info["alive"] and dep.health()["ready"]:
                break
            time.sleep(0.5)
        assert info["restarts"] == 1 and info["pid"] != dep.handle.pid
        assert dep.predict(rows).tolist() == expected
        # the dead server's workers did not outlive it (they would hold its memory and its port)
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                    and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
    finally:
        dep.stop()


def test_a_local_deployment_outlives_the_process_that_made_it(churn_package):
    """Made by one process that then exits; listed, used and stopped by others (a restarted kernel)."""
    env = os.environ.copy()
    made = subprocess.run(
        [sys.executable, "-c", "import deploykit, sys; d = deploykit.deploy(deploykit.Package.load(sys.argv[1]), "
         "name='survivor', verbose=False); print(d.url)", str(churn_package.path)],
        capture_output=True, text=True, env=env, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    url = made.stdout.strip().splitlines()[-1]
    listed = {d.name: d for d in deploykit.deployments()}
    assert listed["survivor"].url == url and listed["survivor"].version == churn_package.version
    rows = churn_package.sample_rows()
    assert len(listed["survivor"].predict(rows)) == len(rows)
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    stopped = subprocess.run([sys.executable, "-m", "deploykit._cli", "stop", "survivor"], capture_output=True,
                             text=True, env=env, timeout=120)
    assert stopped.returncode == 0 and "stopped survivor" in stopped.stdout, stopped.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/readyz", timeout=2)
    assert "survivor" not in [d.name for d in deploykit.deployments()]
    assert listed["survivor"].stopped


def test_the_address_of_a_deployment_is_fixed(churn_package):
    dep = deploykit.deploy(churn_package, name="anchored", verbose=False)
    try:
        other = int(dep.url.rsplit(":", 1)[1]) + 1
        with pytest.raises(deploykit.ConfigError, match="keeps its address for its whole life"):
            deploykit.deploy(churn_package, name="anchored", port=other, verbose=False)
        assert dep.health()["ready"]
        status = dep.status()
        assert status["url"] == dep.url and status["version"] == churn_package.version and status["ready"]
    finally:
        dep.stop()
