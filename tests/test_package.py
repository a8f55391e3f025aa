"""deploykit.package on every supported kind of model, checked in-process against the saved package."""


import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit._runtime.model import ModelRuntime
from deploykit._schema import records


def _runtime(pkg) -> ModelRuntime:
    return ModelRuntime.load(pkg.model_dir)


def _additive(explanation, tol=1e-6):
    values = np.asarray(explanation["values"])
    total = np.asarray(explanation["base_values"]) + values.sum(axis=1)
    assert np.allclose(total, explanation["outputs"], atol=tol)


def _assert_explains_faithfully(pkg, model, X, classes=None):
    runtime = _runtime(pkg)
    frame = runtime.frame({"instances": records(X)})
    explanation = runtime.explain(frame)
    assert explanation["feature_names"] == list(X.columns)
    assert np.asarray(explanation["values"]).shape == (len(X), X.shape[1])
    _additive(explanation)
    outputs = np.asarray(explanation["outputs"])
    if explanation["output"] == "probability":
        proba = model.predict_proba(X)
        picked = [list(model.classes_).index(c) for c in explanation["classes"]]
        assert np.allclose(outputs, proba[np.arange(len(X)), picked], atol=1e-6)
    elif explanation["output"] == "value":
        assert np.allclose(outputs, model.predict(X), atol=1e-4)
    elif explanation["output"] == "log_odds":
        p = model.predict_proba(X)[:, 1]
        assert np.allclose(outputs, np.log(p / (1 - p)), atol=1e-4)
    return explanation


def test_churn_pipeline_package(churn_package, churn_model, churn):
    X_train, X_test, _, y_test = churn
    pkg = churn_package
    m = pkg.manifest
    assert m["task"] == "binary" and m["classes"] == [0, 1]
    assert m["artifacts"]["model"]["format"] == "skops"
    assert pkg.parity["ok"] and pkg.parity["rows"] == 200 and pkg.parity["max_probability_diff"] <= 1e-9
    assert pkg.explainer == "shap.TreeExplainer" and m["explainer"]["output"] == "probability"
    # one-hot outputs group back onto their column
    groups = m["explainer"]["groups"]
    assert len(groups) > X_train.shape[1] and set(groups) == set(range(X_train.shape[1]))
    assert m["metrics"]["accuracy"] == pytest.approx(float(np.mean(churn_model.predict(X_test) == y_test)))
    _assert_explains_faithfully(pkg, churn_model, X_test.iloc[:20])


def test_requirements_are_pinned_to_what_is_installed(churn_package):
    import importlib.metadata as md

    pinned = dict(r.split("==") for r in churn_package.requirements)
    for dist in ("scikit-learn", "numpy", "pandas", "bentoml", "shap", "skops"):
        assert pinned[dist] == md.version(dist), dist
    assert "pytest" not in pinned and "deploykit" not in pinned
    lock = dict(r.split("==") for r in churn_package.manifest["lock"])
    assert set(pinned) <= set(lock) and "scipy" in lock
    text = (churn_package.model_dir / "requirements.txt").read_text().split()
    assert text == churn_package.requirements


def test_unknown_category_policy_is_recorded(churn_package):
    contract = next(c for c in churn_package.schema["columns"] if c["name"] == "contract")
    assert "OneHotEncoder(handle_unknown='ignore') would encode it as all zeros" in contract["unknown"]
    tenure = next(c for c in churn_package.schema["columns"] if c["name"] == "tenure_months")
    assert tenure["kind"] == "integer" and tenure["nullable"] is False


def test_package_reopens_by_name_and_folder(churn_package):
    again = deploykit.Package.load("churn", version=churn_package.version)
    assert again.manifest == churn_package.manifest
    assert deploykit.Package.load(churn_package.path).bento_tag == churn_package.bento_tag
    assert "parity" in churn_package._repr_html_() and "churn" in repr(churn_package)


def _iris_models():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "rf": RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0),
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    }


@pytest.mark.parametrize("kind", ["rf", "logreg"])
def test_multiclass(kind, iris_frame):
    X, y = iris_frame
    model = _iris_models()[kind].fit(X[:120], y[:120])
    pkg = deploykit.package(model, name=f"iris-{kind}", X_train=X[:120], y_train=y[:120], X_test=X[120:], y_test=y[120:], verbose=False)
    assert pkg.manifest["task"] == "multiclass" and pkg.manifest["classes"] == ["setosa", "versicolor", "virginica"]
    assert pkg.parity["ok"]
    explanation = _assert_explains_faithfully(pkg, model, X[120:130])
    assert explanation["classes"] == model.predict(X[120:130]).tolist()


def test_binary_linear_model_uses_linear_explainer(churn):
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X_train, X_test, y_train, _ = churn
    pre = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), ["tenure_months", "monthly_charges", "total_charges"]),
        (OneHotEncoder(handle_unknown="ignore", sparse_output=True), ["contract", "internet"]),
    )
    model = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    pkg = deploykit.package(model, name="churn-linear", X_train=X_train, y_train=y_train, X_test=X_test, verbose=False)
    assert pkg.explainer == "shap.LinearExplainer" and pkg.manifest["explainer"]["output"] == "log_odds"
    explanation = _assert_explains_faithfully(pkg, model, X_test.iloc[:15])
    # columns dropped by the ColumnTransformer contribute nothing
    dropped = [explanation["feature_names"].index(c) for c in ("support_calls", "age", "payment_method")]
    assert np.allclose(np.asarray(explanation["values"])[:, dropped], 0)


def test_regressor(diabetes_frame):
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = diabetes_frame
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(X[:350], y[:350])
    pkg = deploykit.package(model, name="diabetes", X_train=X[:350], y_train=y[:350], X_test=X[350:], y_test=y[350:], verbose=False)
    assert pkg.manifest["task"] == "regression" and pkg.manifest["classes"] is None
    assert pkg.parity["ok"] and pkg.parity["max_value_diff"] <= 1e-9
    assert set(pkg.manifest["metrics"]) == {"r2", "mae", "rows"}
    assert pkg.explainer == "shap.TreeExplainer" and pkg.manifest["explainer"]["output"] == "value"
    _assert_explains_faithfully(pkg, model, X[350:370])


def test_numpy_training_data(churn):
    from sklearn.ensemble import ExtraTreesRegressor

    X_train, X_test, y_train, _ = churn
    A = X_train[["tenure_months", "monthly_charges", "age"]].to_numpy(dtype=float)
    model = ExtraTreesRegressor(n_estimators=10, random_state=0).fit(A, y_train)
    pkg = deploykit.package(model, name="numpy-input", X_train=A, y_train=y_train, verbose=False)
    assert [c["name"] for c in pkg.schema["columns"]] == ["f0", "f1", "f2"]
    assert pkg.manifest["input_kind"] == "array" and pkg.parity["ok"]
    runtime = _runtime(pkg)
    frame = runtime.frame({"instances": [{"f0": 3, "f1": 50.0, "f2": 40}]})
    assert runtime.predict(frame)["predictions"] == pytest.approx(model.predict([[3, 50.0, 40]]).tolist())


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosting_libraries(library, churn):
    X_train, X_test, y_train, y_test = churn
    numeric = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "age"]
    if library == "xgboost":
        from xgboost import XGBClassifier

        model = XGBClassifier(n_estimators=20, max_depth=3)
    else:
        from lightgbm import LGBMClassifier

        model = LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1)
    model.fit(X_train[numeric], y_train)
    pkg = deploykit.package(model, name=f"churn-{library}", X_train=X_train[numeric], y_train=y_train,
                            X_test=X_test[numeric], y_test=y_test, verbose=False)
    assert pkg.parity["ok"]
    assert library in dict(r.split("==") for r in pkg.requirements)
    assert pkg.explainer == "shap.TreeExplainer" and pkg.manifest["explainer"]["output"] == "log_odds"
    _assert_explains_faithfully(pkg, model, X_test[numeric].iloc[:20])


def test_local_module_code_is_carried_by_value_and_explained_on_raw_columns(churn):
    """A transformer from a file that is not an installed package still loads in the clean process."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline

    from helpers.custom import ChargePerMonth

    X_train, X_test, y_train, _ = churn
    numeric = ["tenure_months", "total_charges", "age"]
    model = make_pipeline(ChargePerMonth(), RandomForestClassifier(n_estimators=10, random_state=0))
    model.fit(X_train[numeric].fillna(0), y_train)
    pkg = deploykit.package(model, name="custom-local", X_train=X_train[numeric].fillna(0), y_train=y_train,
                            X_test=X_test[numeric].fillna(0), verbose=False)
    assert pkg.manifest["artifacts"]["model"]["format"] == "cloudpickle"
    assert "helpers.custom" in pkg.manifest["custom_code"]
    assert pkg.parity["ok"]
    # charge_per_month mixes two columns, so SHAP runs model-agnostically on the raw columns
    assert pkg.manifest["explainer"]["space"] == "raw" and pkg.explainer == "shap.KernelExplainer"
    _assert_explains_faithfully(pkg, model, X_test[numeric].fillna(0).iloc[:2])


def test_parity_mismatch_is_an_error(churn):
    from helpers.custom import CoinFlip

    X_train, X_test, y_train, _ = churn
    model = CoinFlip().fit(X_train[["age"]], y_train)
    with pytest.raises(deploykit.ParityError, match="parity check failed") as info:
        deploykit.package(model, name="coin", X_train=X_train[["age"]], X_test=X_test[["age"]], explain=False, verbose=False)
    assert info.value.parity.label_mismatches and info.value.parity.max_probability_diff > 1e-9
    assert not any(p.name.isdigit() for p in (deploykit._paths.packages_dir("coin")).iterdir()), "a failed package leaves nothing"


def _copy(pkg, tmp_path, name):
    import shutil

    copy = tmp_path / name
    shutil.copytree(pkg.path, copy)
    return copy / "model"


def test_tampered_model_artifact_is_refused(churn_package, tmp_path):
    model_dir = _copy(churn_package, tmp_path, "model-tampered")
    model_file = model_dir / churn_package.manifest["artifacts"]["model"]["file"]
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(deploykit.IntegrityError, match="changed after packaging and will not be loaded") as info:
        ModelRuntime.load(model_dir)
    assert info.value.path == str(model_file)


def test_tampered_background_is_refused_before_explaining(churn_package, tmp_path):
    model_dir = _copy(churn_package, tmp_path, "background-tampered")
    background = model_dir / "background.json"
    background.write_text(background.read_text().replace("month-to-month", "two-year", 1))
    runtime = ModelRuntime.load(model_dir)  # the model itself is intact
    with pytest.raises(deploykit.IntegrityError, match="background.json"):
        runtime.explainer()


@pytest.mark.parametrize(
    "make, error, fragment",
    [
        (lambda: object(), deploykit.UnsupportedModelError, "expected a fitted estimator"),
        (lambda: __import__("sklearn.linear_model").linear_model.LogisticRegression(), deploykit.UnsupportedModelError, "not fitted yet"),
    ],
)
def test_unusable_models(make, error, fragment, churn):
    X_train = churn[0][["age"]]
    with pytest.raises(error, match=fragment):
        deploykit.package(make(), name="bad", X_train=X_train, verbose=False)


def test_columns_must_match_what_the_model_was_fitted_on(churn_model, churn):
    X_train = churn[0]
    with pytest.raises(deploykit.SchemaError, match="missing \\['age'\\]"):
        deploykit.package(churn_model, name="bad", X_train=X_train.drop(columns="age"), verbose=False)
    with pytest.raises(deploykit.ConfigError, match="lowercase"):
        deploykit.package(churn_model, name="Churn Model", X_train=X_train, verbose=False)
    with pytest.raises(deploykit.SchemaError, match="X_test lacks columns"):
        deploykit.package(churn_model, name="bad", X_train=X_train, X_test=X_train.drop(columns="age"), verbose=False)


def test_versions_increase(churn_model, churn):
    X_train, X_test, y_train, _ = churn
    a = deploykit.package(churn_model, name="versions", X_train=X_train, X_test=X_test, explain=False, verbose=False)
    b = deploykit.package(churn_model, name="versions", X_train=X_train, X_test=X_test, explain=False, verbose=False)
    assert int(b.version) == int(a.version) + 1 and b.bento_tag == f"versions:v{b.version}"
    assert b.manifest["explainer"] is None


# -- free text (issue 13) ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reviews():
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    words = np.array(["great", "awful", "slow", "fast", "box", "broke", "love", "refund", "again", "never"])
    text = [" ".join(rng.choice(words, 5)) + f" order {i}" for i in range(140)]
    X = pd.DataFrame({"review": text, "plan": rng.choice(["basic", "pro"], 140)})
    y = pd.Series([int("great" in t or "love" in t) for t in text])
    model = make_pipeline(ColumnTransformer([("text", TfidfVectorizer(), "review"),
                                             ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])]),
                          LogisticRegression(max_iter=500))
    return model.fit(X[:120], y[:120]), X, y


def test_free_text_the_pipeline_vectorizes_is_served_as_text_even_with_a_small_test_set(reviews):
    model, X, y = reviews
    pkg = deploykit.package(model, name="reviews", X_train=X[:120], y_train=y[:120], X_test=X[120:128],
                            y_test=y[120:128], explain=False, fast_path=False, verbose=False)
    review = next(c for c in pkg.schema["columns"] if c["name"] == "review")
    assert review["kind"] == "string" and review["inferred"] == "pipeline: its TfidfVectorizer reads the column"
    assert pkg.parity["ok"] and pkg.parity["rows"] == 8  # every test row fits: none of their texts was seen
    runtime = _runtime(pkg)
    new = {"review": "a text nobody wrote before", "plan": "pro"}
    assert runtime.labels(runtime.columns({"instances": [new]})) == model.predict(pd.DataFrame([new])).tolist()


def test_a_test_set_no_row_of_which_fits_names_the_column_and_the_cause(reviews):
    model, X, y = reviews
    with pytest.raises(deploykit.SchemaError) as info:
        deploykit.package(model, name="reviews", X_train=X[:120], y_train=y[:120], X_test=X[120:128],
                          y_test=y[120:128], schema={"review": "category"}, explain=False, fast_path=False, verbose=False)
    message = str(info.value)
    assert info.value.column == "review" and "none of the 8 rows of the test data fits" in message
    assert "column 'review' refuses 8 of them (row 0: unseen category" in message
    assert "no row of the test data fits" not in message


def test_limits_and_the_explainers_cost_are_in_the_manifest(churn_package):
    limits, explainer = churn_package.manifest["limits"], churn_package.manifest["explainer"]
    assert limits["max_batch"] == churn_package.schema["max_batch"] == 1000 and limits["max_string"] == 10_000
    assert 0 < explainer["seconds_per_row"] < 1  # measured when packaging: the /explain budget counts in it
