"""Shared fixtures: isolated deploykit/BentoML homes, trained models, and the CI no-silent-skip rule."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

# Notebooks under tests/ are inputs of tests (deploykit run), not tutorials for nbval to execute.
collect_ignore_glob = ["notebooks/*.ipynb"]


def require(available: bool, component: str, how: str) -> None:
    """Skip a test whose component is missing, except under CI=true, where that fails the run."""
    if available:
        return
    message = f"{component} is not available: {how}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}; .ci/run must provide it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def isolated_homes(tmp_path_factory):
    """One DEPLOYKIT_HOME and BENTOML_HOME for the whole run, never the user's own."""
    root = tmp_path_factory.mktemp("homes")
    saved = {k: os.environ.get(k) for k in ("DEPLOYKIT_HOME", "BENTOML_HOME", "BENTOML_DO_NOT_TRACK")}
    os.environ["DEPLOYKIT_HOME"] = str(root / "deploykit")
    os.environ["BENTOML_HOME"] = str(root / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    yield root
    import deploykit

    for dep in deploykit.deployments():
        dep.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def churn():
    from deploykit.demo import make_churn

    X, y = make_churn(n=800, seed=1)
    return X[:600], X[600:], y[:600], y[600:]


@pytest.fixture(scope="session")
def churn_model(churn):
    from deploykit.demo import churn_pipeline

    X_train, _, y_train, _ = churn
    model = churn_pipeline()
    model.set_params(model__n_estimators=30, model__max_depth=6)
    return model.fit(X_train, y_train)


@pytest.fixture(scope="session")
def churn_package(churn, churn_model):
    import deploykit

    X_train, X_test, y_train, y_test = churn
    return deploykit.package(churn_model, name="churn", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, verbose=False)


@pytest.fixture(scope="session")
def iris_frame():
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    y = data.target.map(dict(enumerate(data.target_names)))
    order = np.random.default_rng(0).permutation(len(X))
    return X.iloc[order].reset_index(drop=True), y.iloc[order].reset_index(drop=True)


@pytest.fixture(scope="session")
def diabetes_frame():
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True)
    return data.data, pd.Series(data.target, name="progression")
