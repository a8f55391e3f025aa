"""The swarm target on a real single-node Docker Swarm: replicas behind the front, a killed replica, a refused
broken version, scaling, and a canary, each under checked load.

The tests share one deployment ("sw") and run in this file's order: it is made once (the slow part is a
service's replicas passing their health checks), then each test does something to it under load.
"""

from __future__ import annotations

import time

import httpx
import pytest

import deploykit
from deploykit._cli import main
from deploykit._docker.engine import LABEL
from tests.conftest import require
from tests.helpers.load import Hammer
from tests.helpers.packages import broken_copy

pytestmark = pytest.mark.docker

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]
NAME = "sw"


@pytest.fixture(scope="module")
def swarm(docker_engine, base_image):
    """The engine as a swarm manager; afterwards, the services these tests made are removed."""
    state = (docker_engine.info().get("Swarm") or {}).get("LocalNodeState")
    require(state == "active", "a Docker Swarm", "run `docker swarm init` on this engine (`.ci/run` does)")
    before = {s.id for s in docker_engine.services.list()}
    yield docker_engine
    from deploykit._targets.swarm import _remove_services

    _remove_services([s for s in docker_engine.services.list(filters={"label": f"{LABEL}.managed=true"})
                      if s.id not in before])


@pytest.fixture(scope="module")
def pair(churn):
    """Two versions of 'sw' whose models disagree on part of the rows sent, and what each predicts."""
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, y_test = churn[0][NUMERIC], churn[1][NUMERIC], churn[2], churn[3]
    rows = X_test.iloc[:10]
    made = []
    for depth in (2, 8):
        model = RandomForestClassifier(n_estimators=10, max_depth=depth, random_state=1).fit(X_train, y_train)
        pkg = deploykit.package(model, name=NAME, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                                verbose=False)
        made.append((pkg, model.predict(rows).tolist()))
    assert made[0][1] != made[1][1]
    return made, rows.to_dict(orient="records")


@pytest.fixture(scope="module")
def deployment(swarm, pair):
    [(v1, _), _], _ = pair
    started = time.monotonic()
    dep = deploykit.deploy(v1, target="swarm", name=NAME, replicas=2, verbose=False)
    print(f"\nswarm: v{v1.version} with 2 replicas served in {time.monotonic() - started:.1f} s (image included)")
    yield dep
    for found in deploykit.deployments():
        if found.name == NAME:
            found.stop()


def _current():
    return next(d for d in deploykit.deployments() if d.name == NAME)


def _addresses(dep, count: int, timeout: float = 10.0) -> list[str]:
    """The replica addresses the front resolves for the live version, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = dep.front.status()["addresses"].get(dep.handle.upstream, [])
        if len(found) == count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_two_replicas_serve_behind_the_front(deployment, pair, swarm):
    [(v1, expected), _], rows = pair
    assert deployment.target == "swarm" and deployment.status()["replicas"] == 2 and deployment.health()["ready"]
    assert deployment.predict(rows).tolist() == expected
    assert len(_addresses(deployment, 2)) == 2  # Swarm's DNS lists both healthy replicas, the front uses both
    # the front publishes on every interface (Swarm has no host address for a port): API keys are on by default
    assert httpx.post(f"{deployment.url}/predict", json={"instances": rows}).status_code == 401
    deployment.front.call("PUT", "settings", {"auth": False})  # the load below is anonymous
    assert httpx.post(f"{deployment.url}/predict", json={"instances": rows}).status_code == 200
    # each replica runs as hardened as a docker container: read-only, no capabilities, non-root, limits
    spec = swarm.services.get(deployment.handle.instance).attrs["Spec"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["ReadOnly"] and container["CapabilityDrop"] == ["ALL"] and container["User"] == "10001:10001"
    assert spec["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] == 2 * 1024 ** 3
    assert spec["EndpointSpec"]["Mode"] == "dnsrr" and spec["UpdateConfig"]["Order"] == "start-first"
    assert spec["UpdateConfig"]["FailureAction"] == "rollback" and spec["UpdateConfig"]["Parallelism"] == 1


def test_a_killed_replica_loses_no_request(deployment, pair, swarm):
    [(v1, expected), _], rows = pair
    before = {t["ID"] for t in deployment.handle.tasks()}
    victim = next(t for t in deployment.handle.tasks() if t["Status"]["State"] == "running")
    with Hammer(deployment.url, rows, expected={v1.version: expected}) as load:
        load.wait_for(100)
        swarm.containers.get(victim["Status"]["ContainerStatus"]["ContainerID"]).kill()
        killed = time.monotonic()
        deadline = killed + 60
        while not (_new_running(deployment.handle, before) and deployment.handle.running() == 2) \
                and time.monotonic() < deadline:  # Swarm notices, and starts a replacement that passes its check
            time.sleep(0.2)
        recovered = time.monotonic() - killed
        load.wait_for(load.ok + 100)
    assert load.failed == 0 and load.ok > 200, load.errors[:3]
    assert deployment.handle.running() == 2 and _new_running(deployment.handle, before)
    assert len(_addresses(deployment, 2)) == 2  # the replacement is in the front's rotation
    print(f"\nswarm: a killed replica was replaced in {recovered:.1f} s; {load.ok} requests, {load.failed} failed")


def _new_running(version, before: set[str]) -> bool:
    return any(t["ID"] not in before and t["Status"]["State"] == "running" for t in version.tasks() or [])


def _running_ids(version) -> set[str]:
    return {t["ID"] for t in version.tasks() or [] if t["Status"]["State"] == "running" and t["DesiredState"] == "running"}


def test_scale_to_three_and_back_loses_no_request(deployment, pair, swarm, capsys):
    [(v1, expected), _], rows = pair
    serving = _running_ids(deployment.handle)
    with Hammer(deployment.url, rows, expected={v1.version: expected}) as load:
        started = time.monotonic()
        assert main(["scale", NAME, "3"]) == 0
        up = time.monotonic() - started
        assert f"{NAME} v{v1.version}: 3 replicas at {deployment.url}" in capsys.readouterr().out
        assert deployment.status()["replicas"] == 3 and deployment.handle.running() == 3
        assert serving < _running_ids(deployment.handle)  # one more replica; the serving ones were left alone
        assert swarm.services.get(deployment.handle.instance).attrs.get("UpdateStatus") is None  # no rolling update
        assert len(_addresses(deployment, 3)) == 3
        load.wait_for(load.ok + 50)
        started = time.monotonic()
        assert deployment.scale(2) is deployment
        down = time.monotonic() - started
        assert deployment.handle.running() == 2 and len(_addresses(deployment, 2)) == 2
        load.wait_for(load.ok + 50)
    assert load.failed == 0, load.errors[:3]
    print(f"\nswarm: 2→3 replicas in {up:.1f} s, 3→2 in {down:.2f} s; {load.ok} requests, {load.failed} failed")
    with pytest.raises(deploykit.ConfigError, match="replicas=0"):
        deployment.scale(0)


def test_a_broken_version_is_refused_and_the_live_one_keeps_serving(deployment, pair, swarm, tmp_path):
    [(v1, expected), _], rows = pair
    broken = broken_copy(v1, tmp_path / "broken")
    with Hammer(deployment.url, rows, expected={v1.version: expected}) as load:
        started = time.monotonic()
        with pytest.raises(deploykit.DeploymentError, match="IntegrityError") as info:
            deploykit.deploy(broken, target="swarm", name=NAME, auth=False, verbose=False)
        refused = time.monotonic() - started
        load.wait_for(load.ok + 50)
    assert "will not be loaded" in info.value.logs
    assert load.failed == 0 and set(load.versions) == {v1.version}, load.errors[:3]
    left = swarm.services.list(filters={"label": [f"{LABEL}.name={NAME}", f"{LABEL}.version={broken.version}"]})
    assert left == [] and _current().version == v1.version
    print(f"\nswarm: the broken version was refused in {refused:.1f} s; {load.ok} requests, {load.failed} failed")


def test_a_canary_runs_beside_the_live_version_and_is_promoted(deployment, pair, swarm):
    [(v1, e1), (v2, e2)], rows = pair
    expected = {v1.version: e1, v2.version: e2}
    canary = deploykit.deploy(v2, target="swarm", name=NAME, strategy="canary", traffic=0.3, auth=False,
                              verbose=False)  # a redeploy on a public port turns API keys on again, unless told
    assert canary.version == v1.version and canary.candidate == v2.version and canary.url == deployment.url
    started = swarm.services.list(filters={"label": [f"{LABEL}.name={NAME}", f"{LABEL}.version={v2.version}"]})
    assert started[0].attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2  # as many as the live version runs
    with Hammer(deployment.url, rows, expected=expected) as load:
        load.wait_for(150)
    assert load.failed == 0, load.errors[:3]
    share = load.versions.count(v2.version) / len(load.versions)
    assert 0.15 < share < 0.45, share
    sent = load.ok
    with Hammer(deployment.url, rows, expected=expected) as load:
        started = time.monotonic()
        promoted = deploykit.promote(NAME, verbose=False)
        took = time.monotonic() - started
        load.wait_for(load.ok + 50)
    assert load.failed == 0 and load.versions[-1] == v2.version, load.errors[:3]
    print(f"\nswarm: canary share {share:.0%} of {sent} requests, promoted in {took:.1f} s under {load.ok} more; 0 failed")
    assert promoted.version == v2.version and promoted.candidate is None
    # the front asked every replica of the old version to exit; deployments() then removes its service
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        services = swarm.services.list(filters={"label": [f"{LABEL}.name={NAME}", f"{LABEL}.role=model"]})
        if [s.name for s in services] == [promoted.handle.instance]:
            break
        time.sleep(0.5)
        deploykit.deployments()
    assert [s.name for s in services] == [promoted.handle.instance]


def test_stop_removes_every_service_and_the_network(deployment, swarm):
    _current().stop()
    assert swarm.services.list(filters={"label": f"{LABEL}.name={NAME}"}) == []
    assert swarm.networks.list(names=[f"deploykit-{NAME}-swarm"]) == []
    assert NAME not in [d.name for d in deploykit.deployments()]
