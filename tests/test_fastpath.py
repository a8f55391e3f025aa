"""The compiled fast path (treelite or ONNX Runtime): chosen only when it proves itself, and held to the
same HTTP contract as the plain path; plus request coalescing on the plain path. Every family's
compilation is in test_compiled.py."""

import concurrent.futures

import httpx
import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit._runtime.model import ModelRuntime
from deploykit._schema import records


@pytest.fixture(scope="module")
def numeric():
    from sklearn.datasets import make_classification

    X, y = make_classification(1500, 20, n_informative=10, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)])
    X["x19"] = (X["x19"] * 10).round().astype("int64")  # an integer column, which ONNX reads as a double
    return X[:1000], X[1000:], pd.Series(y[:1000]), pd.Series(y[1000:])


@pytest.fixture(scope="module")
def forest(numeric):
    from sklearn.ensemble import RandomForestClassifier

    X_train, _, y_train, _ = numeric
    return RandomForestClassifier(n_estimators=40, max_depth=8, random_state=0).fit(X_train, y_train)


@pytest.fixture(scope="module")
def forest_package(forest, numeric):
    X_train, X_test, y_train, y_test = numeric
    return deploykit.package(forest, name="fast-rf", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, verbose=False)


def test_fast_path_is_chosen_only_after_checking_every_test_row(forest_package, numeric):
    fast = forest_package.manifest["serving"]["fast_path"]
    assert fast["enabled"] is True and fast["label_mismatches"] == 0
    assert fast["rows_checked"] == len(numeric[1]) and fast["max_difference"] <= fast["tolerance"] == 1e-5
    assert fast["engine"] == "onnx" and fast["precision"] == "double" and fast["inputs"] == "prep"
    assert "onnxruntime" in dict(r.split("==") for r in forest_package.requirements)
    assert (forest_package.model_dir / fast["file"]).exists() and not (forest_package.model_dir / "model.treelite").exists()


def test_the_card_says_which_path_serves(forest_package):
    fast = forest_package.card.to_dict()["deployment"]["serving_path"]
    assert fast.startswith("compiled fast path: ONNX Runtime (double precision)") and "x-deploykit-path: onnx" in fast
    assert "Serving path" in forest_package.card.to_html() and "Serving path" in forest_package.card.to_markdown()


def test_the_churn_pipeline_compiles_with_its_preprocessing_in_numpy(churn_package, churn_model, churn):
    """Imputer, scaler and one-hot run in float64 numpy; in float32 ONNX they moved probabilities by 0.019."""
    fast = churn_package.manifest["serving"]["fast_path"]
    assert fast["enabled"] and fast["inputs"] == "prep" and fast["max_difference"] <= 1e-5
    runtime = ModelRuntime.load(churn_package.model_dir)
    assert runtime.path == fast["engine"]
    X_test = churn[1]
    columns = runtime.columns({"instances": records(X_test)})
    assert runtime.labels(columns) == churn_model.predict(X_test).tolist()


def test_tampered_compiled_model_is_refused(forest_package, tmp_path):
    import shutil

    shutil.copytree(forest_package.path, tmp_path / "pkg")
    compiled = forest_package.manifest["serving"]["fast_path"]["file"]
    (tmp_path / "pkg" / "model" / compiled).write_bytes(b"tampered")
    with pytest.raises(deploykit.IntegrityError, match=compiled):
        ModelRuntime.load(tmp_path / "pkg" / "model")


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("sklearn.linear_model", fromlist=["x"]).LogisticRegression(max_iter=500),
        lambda: __import__("sklearn.ensemble", fromlist=["x"]).HistGradientBoostingClassifier(max_iter=30),
    ],
    ids=["logistic", "histgb"],
)
def test_other_models_either_pass_the_gate_or_say_why(make, numeric):
    X_train, X_test, y_train, y_test = numeric
    model = make().fit(X_train, y_train)
    pkg = deploykit.package(model, name="fast-other", X_train=X_train, y_train=y_train, X_test=X_test,
                            explain=False, verbose=False)
    fast = pkg.manifest["serving"]["fast_path"]
    if fast["enabled"]:
        runtime = ModelRuntime.load(pkg.model_dir)
        columns = runtime.columns({"instances": records(X_test)})
        assert runtime.labels(columns) == model.predict(X_test).tolist()
        assert np.abs(np.asarray(runtime.probabilities(columns)) - model.predict_proba(X_test)).max() <= 1e-5
    else:
        assert fast["reason"]


@pytest.mark.serve
class TestServedFastPath:
    @pytest.fixture(scope="class")
    def served(self, forest_package):
        dep = deploykit.deploy(forest_package, name="fast-served", verbose=False)
        yield dep
        dep.stop()

    def test_contract_on_the_fast_path(self, served, forest, numeric):
        X_test = numeric[1].iloc[:200]
        response = httpx.post(served.url + "/predict", json={"instances": records(X_test)})
        assert response.headers["x-deploykit-path"] == "onnx"
        assert response.json()["predictions"] == forest.predict(X_test).tolist()
        proba = httpx.post(served.url + "/predict_proba", json={"instances": records(X_test)}).json()
        assert np.abs(np.asarray(proba["probabilities"]) - forest.predict_proba(X_test)).max() <= 1e-5
        explanation = served.explain(X_test.iloc[:3])
        assert np.allclose(explanation.base_values + explanation.values.sum(1), explanation.outputs, atol=1e-6)
        assert np.allclose(explanation.outputs, forest.predict_proba(X_test.iloc[:3])[:, 1], atol=1e-6)

    @pytest.mark.parametrize(
        "body, status, fragment",
        [
            ({"instances": [{"x0": 1.0}]}, 422, "missing column"),
            ({"instances": [{**{f"x{i}": 0.0 for i in range(20)}, "x3": "high"}]}, 422, "expected a number"),
            ({"instances": [{**{f"x{i}": 0.0 for i in range(20)}, "x3": None}]}, 422, "null is not allowed"),
            ({"instances": []}, 400, "empty"),
            ({"instances": [{f"x{i}": 0.0 for i in range(20)}] * 1001}, 413, "exceeds the limit"),
            ({"instances": [{**{f"x{i}": 0.0 for i in range(20)}, "x19": 1e300}]}, 422, "outside"),  # was a 200
            ({"instances": [{**{f"x{i}": 0.0 for i in range(20)}, "x19": 2**63}]}, 422, "the range of int64"),
            ({"instances": [{**{f"x{i}": 0.0 for i in range(20)}, "x3": int("9" * 400)}]}, 422, "outside"),
        ],
    )
    def test_bad_input_on_the_fast_path(self, served, body, status, fragment):
        response = httpx.post(served.url + "/predict", json=body)
        assert response.status_code == status and fragment in response.json()["error"]
        assert set(response.json()) == {"error", "details"}

    def test_served_probabilities_are_within_0_1(self, served, numeric):
        X_test = numeric[1].iloc[:200]
        response = httpx.post(served.url + "/predict_proba", json={"instances": records(X_test)})
        p = np.asarray(response.json()["probabilities"])
        assert response.headers["x-deploykit-path"] == "onnx"
        assert ((p >= 0) & (p <= 1)).all() and np.abs(p.sum(axis=1) - 1).max() <= 1e-12


def test_compiled_probabilities_are_clipped_to_0_1_and_sum_to_1(forest_package, numeric):
    from deploykit._runtime.fastpath import normalised

    raw = np.array([[-3.6e-7, 1.00000036], [0.5, 0.5], [0.0, 0.0]])
    fixed = normalised(raw)
    assert ((fixed >= 0) & (fixed <= 1)).all() and np.allclose(fixed.sum(axis=1), 1, atol=1e-15)
    assert fixed[0].tolist() == [0.0, 1.0] and fixed[2].tolist() == [0.5, 0.5]
    runtime = ModelRuntime.load(forest_package.model_dir)
    served = np.asarray(runtime.probabilities(runtime.columns({"instances": records(numeric[1].iloc[:200])})))
    assert ((served >= 0) & (served <= 1)).all() and np.abs(served.sum(axis=1) - 1).max() <= 1e-12


def test_the_parity_check_refuses_probabilities_outside_0_1():
    from deploykit._fastpath import probabilities_in_range

    assert probabilities_in_range([[0.25, 0.75], [1.0, 0.0]])
    assert not probabilities_in_range([[-3.6e-7, 1.00000036]]) and not probabilities_in_range([[0.5, 0.6]])


@pytest.mark.serve
def test_fast_path_can_be_switched_off(forest_package, forest, numeric, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_FAST_PATH", "0")
    dep = deploykit.deploy(forest_package, name="fast-off", verbose=False)
    try:
        X_test = numeric[1].iloc[:20]
        response = httpx.post(dep.url + "/predict_proba", json={"instances": records(X_test)})
        assert response.headers["x-deploykit-path"] == "sklearn"
        assert np.abs(np.asarray(response.json()["probabilities"]) - forest.predict_proba(X_test)).max() <= 1e-9
    finally:
        dep.stop()


@pytest.mark.serve
def test_plain_path_coalesces_concurrent_requests_without_mixing_answers(churn_package, churn_model, churn, monkeypatch):
    """Requests arriving while the model is busy share its next call; each still gets its own rows."""
    monkeypatch.setenv("DEPLOYKIT_FAST_PATH", "0")
    dep = deploykit.deploy(churn_package, name="coalesce", verbose=False)
    X_test = churn[1]
    try:
        def call(i):
            rows = X_test.iloc[i % 150: i % 150 + 1 + i % 3]
            response = httpx.post(dep.url + "/predict_proba", json={"instances": records(rows)}, timeout=60)
            return rows, response

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(160)))
        batches = []
        for rows, response in results:
            assert response.status_code == 200 and response.headers["x-deploykit-path"] == "sklearn"
            got = np.asarray(response.json()["probabilities"])
            assert np.abs(got - churn_model.predict_proba(rows)).max() <= 1e-9
            batches.append(int(response.headers["x-deploykit-batch"]) - len(rows))
        assert max(batches) > 0, "no request was ever answered together with another"
    finally:
        dep.stop()
