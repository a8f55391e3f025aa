"""deploykit.deploy on the local target: each model type really served, and replacement that never
drops the working version."""

import httpx
import numpy as np
import pytest

import deploykit
from tests.helpers.packages import broken_copy

pytestmark = pytest.mark.serve


def _models(churn, iris_frame, diabetes_frame):
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
    from xgboost import XGBClassifier

    X_train, X_test, y_train, _ = churn
    numeric = ["tenure_months", "monthly_charges", "support_calls", "age"]
    Xi, yi = iris_frame
    Xd, yd = diabetes_frame
    return {
        "multiclass": (RandomForestClassifier(n_estimators=15, random_state=0), Xi[:120], yi[:120], Xi[120:]),
        "regressor": (HistGradientBoostingRegressor(max_iter=30), Xd[:350], yd[:350], Xd[350:]),
        "xgboost": (XGBClassifier(n_estimators=15, max_depth=3), X_train[numeric], y_train, X_test[numeric]),
        "lightgbm": (LGBMClassifier(n_estimators=15, num_leaves=8, verbose=-1), X_train[numeric], y_train, X_test[numeric]),
        "numpy": (RandomForestClassifier(n_estimators=10, random_state=0), X_train[numeric].to_numpy(), y_train, X_test[numeric].to_numpy()),
    }


@pytest.mark.parametrize("kind", ["multiclass", "regressor", "xgboost", "lightgbm", "numpy"])
def test_model_types_are_served(kind, churn, iris_frame, diabetes_frame):
    model, X, y, X_test = _models(churn, iris_frame, diabetes_frame)[kind]
    model.fit(X, y)
    dep = deploykit.deploy(model, name=f"served-{kind}", X_train=X, y_train=y, X_test=X_test, verbose=False)
    try:
        rows = X_test[:8]
        expected = model.predict(rows)
        got = dep.predict(rows)
        if kind == "regressor":
            assert np.abs(got - expected).max() <= 1e-9
            with pytest.raises(deploykit.RequestError, match="only served for classifiers"):
                dep.predict_proba(rows)
        else:
            assert got.tolist() == expected.tolist()
            assert np.abs(dep.predict_proba(rows) - model.predict_proba(rows)).max() <= 1e-6
        explanation = dep.explain(rows[:3])
        assert np.allclose(explanation.base_values + explanation.values.sum(axis=1), explanation.outputs, atol=1e-6)
        assert explanation.values.shape == (3, X.shape[1])
    finally:
        dep.stop()
    assert not dep.health()["live"]


def test_replace_only_when_healthy(churn_package, tmp_path):
    first = deploykit.deploy(churn_package, name="rollout", verbose=False)
    rows = churn_package.sample_rows()
    expected = first.predict(rows).tolist()

    # a broken release: the model artifact no longer matches its sha256, so the service cannot start
    broken = broken_copy(churn_package, tmp_path / "broken")
    with pytest.raises(deploykit.DeploymentError, match="failed to start: IntegrityError: artifact model.skops") as info:
        deploykit.deploy(broken, name="rollout", verbose=False)
    assert "will not be loaded" in str(info.value) or "will not be loaded" in info.value.logs
    assert first.health()["ready"] and first.predict(rows).tolist() == expected
    assert [d for d in deploykit.deployments() if d.name == "rollout"] == [first]

    # a good release replaces it, only once healthy, at the same URL; the old version is then retired
    old = first.handle
    second = deploykit.deploy(churn_package, name="rollout", verbose=False)
    assert second.url == first.url and second.predict(rows).tolist() == expected
    assert second.handle.instance != old.instance and old.exited() is not None
    with pytest.raises(deploykit.ConfigError, match=r"cannot scale; deploy it with target= one of \['swarm'\]"):
        second.scale(2)  # one copy per version on this target
    assert first.stopped
    with pytest.raises(deploykit.DeploymentError, match="was stopped or replaced"):
        first.predict(rows)
    assert [d for d in deploykit.deployments() if d.name == "rollout"] == [second]
    second.stop()
    assert "rollout" not in [d.name for d in deploykit.deployments()]
    with pytest.raises(httpx.ConnectError):
        httpx.get(second.url + "/readyz", timeout=2)


def test_deploy_arguments_are_checked(churn_model, churn_package):
    with pytest.raises(deploykit.ConfigError, match="target 'mars' is not available"):
        deploykit.deploy(churn_package, target="mars")
    with pytest.raises(deploykit.ConfigError, match="name is required"):
        deploykit.deploy(churn_model, X_train=None)
    with pytest.raises(deploykit.ConfigError, match="X_train is required"):
        deploykit.deploy(churn_model, name="x")
    with pytest.raises(deploykit.ConfigError, match="apply when packaging"):
        deploykit.deploy(churn_package, X_train=1)
    with pytest.raises(deploykit.ConfigError, match=r"\['replicas'\] apply to target='swarm'"):
        deploykit.deploy(churn_package, replicas=3)


def test_port_in_use_is_a_clear_error(churn_package):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(deploykit.ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            deploykit.deploy(churn_package, port=port, verbose=False)


def test_deployments_survive_a_new_python_process(churn_package):
    """Another process (a restarted kernel) sees and can stop what this one started."""
    import subprocess
    import sys

    dep = deploykit.deploy(churn_package, name="shared", verbose=False)
    code = (
        "import deploykit; ds=[d for d in deploykit.deployments() if d.name=='shared']; "
        "print(ds[0].url, ds[0].version, ds[0].health()['ready']); ds[0].stop()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [dep.url, dep.version, "True"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(dep.url + "/readyz", timeout=2)
    assert not dep.health()["live"]
    assert "shared" not in [d.name for d in deploykit.deployments()]
