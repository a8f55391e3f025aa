"""The compiled path for every family: each model compiles (ONNX Runtime or treelite), passes the parity
gate on the test rows, and gives the model's own answers on rows the gate never saw; a model that cannot
compile says why and the plain path serves."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit._capture import inspect_model
from deploykit._fastpath import plan_fast_path
from deploykit._runtime.fastpath import FastPath
from deploykit._runtime.model import ModelRuntime
from deploykit._runtime.schema import InstanceValidator
from deploykit._schema import infer_schema, records

TRAIN, GATE = 600, 900  # rows [0, 600) fit, [600, 900) are the gate's test rows, the rest are held out


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import make_classification, make_regression

    from deploykit.demo import make_churn

    X, y = make_classification(1100, 12, n_informative=8, random_state=0)
    numeric = pd.DataFrame(X, columns=[f"x{i}" for i in range(12)]), pd.Series(y)
    X, y = make_classification(1100, 8, n_informative=6, n_classes=3, random_state=1)
    multiclass = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]), pd.Series(np.array(["a", "b", "c"])[y])
    X, y = make_regression(1100, 8, noise=5.0, random_state=0)
    regression = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]), pd.Series(y)
    churn, churned = make_churn(1100, seed=3)
    native = churn.copy()
    for column in ("contract", "internet", "payment_method"):
        native[column] = native[column].astype("category")
    return {"numeric": numeric, "multiclass": multiclass, "regression": regression, "churn": (churn, churned),
            "native": (native, churned), "native-complete": (native.drop(columns="total_charges"), churned)}


def _families():
    import lightgbm
    import xgboost
    from sklearn import ensemble, linear_model
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    from deploykit.demo import churn_pipeline

    def churn_with(final):
        pipeline = churn_pipeline()
        pipeline.steps[-1] = ("model", final)
        return pipeline

    return {
        "random-forest": ("numeric", "onnx", lambda: ensemble.RandomForestClassifier(30, max_depth=6, random_state=0)),
        "gradient-boosting": ("numeric", "treelite", lambda: ensemble.GradientBoostingClassifier(n_estimators=30, random_state=0)),
        "hist-gradient-boosting": ("numeric", "treelite", lambda: ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0)),
        "hist-gradient-boosting-multiclass": ("multiclass", "treelite", lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0)),
        "hist-gradient-boosting-native-categories": ("native-complete", "treelite", lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0)),
        "logistic-regression": ("numeric", "onnx", lambda: linear_model.LogisticRegression(max_iter=500)),
        "logistic-regression-multiclass": ("multiclass", "onnx", lambda: linear_model.LogisticRegression(max_iter=500)),
        "scaled-logistic-regression": ("numeric", "onnx", lambda: make_pipeline(MinMaxScaler(), linear_model.LogisticRegression())),
        "linear-regression": ("regression", "onnx", lambda: linear_model.LinearRegression()),
        "ridge": ("regression", "onnx", lambda: make_pipeline(StandardScaler(), linear_model.Ridge())),
        "gradient-boosting-regressor": ("regression", "treelite", lambda: ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0)),
        "lightgbm": ("numeric", "treelite", lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)),
        "lightgbm-native-categories": ("native", "treelite", lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)),
        "xgboost": ("numeric", "onnx", lambda: xgboost.XGBClassifier(n_estimators=30, max_depth=4)),
        "xgboost-native-categories": ("native", "treelite", lambda: xgboost.XGBClassifier(
            n_estimators=30, max_depth=4, enable_categorical=True, tree_method="hist")),
        "pipeline-imputer-scaler-onehot-forest": ("churn", "onnx", lambda: churn_with(ensemble.RandomForestClassifier(30, max_depth=8, random_state=0))),
        "pipeline-imputer-scaler-onehot-logistic": ("churn", "onnx", lambda: churn_with(linear_model.LogisticRegression(max_iter=500))),
        "pipeline-imputer-scaler-onehot-hgb": ("churn", "treelite", lambda: churn_with(ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0))),
    }


FAMILIES = _families()


def _compiled(model, X, tmp_path):
    facts = inspect_model(model, X.iloc[:TRAIN])
    schema = infer_schema(X.iloc[:TRAIN])
    fast = plan_fast_path(model, facts, schema, X.iloc[TRAIN:GATE], tmp_path)
    return fast, schema, facts


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_compiles_and_answers_as_the_model_on_held_out_rows(family, data, tmp_path):
    kind, engine, make = FAMILIES[family]
    X, y = data[kind]
    model = make().fit(X.iloc[:TRAIN], y.iloc[:TRAIN])
    fast, schema, facts = _compiled(model, X, tmp_path)
    assert fast["enabled"], fast.get("reason")
    assert fast["engine"] == engine and fast["rows_checked"] == GATE - TRAIN
    assert fast["label_mismatches"] == 0 and fast["max_difference"] <= fast["tolerance"] == 1e-5
    held_out = X.iloc[GATE:]
    path = FastPath(tmp_path, fast, schema, facts.task, facts.classes)
    validator = InstanceValidator(schema)
    keep = [i for i, row in enumerate(records(held_out)) if not _unseen(validator, row)]
    labels, probabilities = path.run(validator.columns_of([records(held_out)[i] for i in keep]))
    held_out = held_out.iloc[keep]
    if facts.task == "regression":
        assert np.allclose(labels, model.predict(held_out), rtol=1e-5, atol=1e-5)
    else:
        assert labels == model.predict(held_out).tolist()
        assert np.abs(probabilities - model.predict_proba(held_out)).max() <= 1e-5
        assert probabilities.min() >= 0 and np.allclose(probabilities.sum(axis=1), 1.0)


def _unseen(validator, row) -> bool:
    """A held-out row the service would refuse (an unseen category): not a row the path answers."""
    from deploykit._runtime.errors import InputError

    try:
        validator.columns_of([row])
    except InputError:
        return True
    return False


def test_an_exact_tie_goes_to_the_first_class_as_in_scikit_learn(data, tmp_path):
    """skl2onnx's float32 leaf values turn this forest's 0.5 / 0.5 into 0.49999999 / 0.50000001."""
    X, y = data["churn"]
    model = FAMILIES["pipeline-imputer-scaler-onehot-forest"][2]().fit(X.iloc[:TRAIN], y.iloc[:TRAIN])
    fast, schema, facts = _compiled(model, X, tmp_path)
    assert fast["enabled"] and fast["engine"] == "onnx" and fast["ties"] == 1e-7
    held_out = X.iloc[GATE:]
    tied = np.flatnonzero(np.diff(model.predict_proba(held_out), axis=1)[:, 0] == 0)
    assert len(tied) > 0
    columns = InstanceValidator(schema).columns_of(records(held_out))
    labels, _ = FastPath(tmp_path, fast, schema, facts.task, facts.classes).run(columns)
    assert [labels[i] for i in tied] == [model.classes_[0]] * len(tied) == model.predict(held_out.iloc[tied]).tolist()
    untied, _ = FastPath(tmp_path, {**fast, "ties": 0.0}, schema, facts.task, facts.classes).run(columns)
    assert [untied[i] for i in tied] != [labels[i] for i in tied]  # what the rule is for


def test_a_model_with_no_compiled_form_says_why_for_each_engine(data, tmp_path):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = data["numeric"]
    model = make_pipeline(FunctionTransformer(np.tanh), RandomForestClassifier(10, random_state=0))
    model.fit(X.iloc[:TRAIN], y.iloc[:TRAIN])
    fast, _, _ = _compiled(model, X, tmp_path)
    assert fast["enabled"] is False
    assert "preprocessing: FunctionTransformer has no numpy form" in fast["reason"]
    assert "whole pipeline as ONNX" in fast["reason"]
    assert not list(tmp_path.glob("model.*")) and not (tmp_path / "prep.json").exists()


@pytest.fixture(scope="module")
def native_package(data):
    """A LightGBM model reading category columns itself: compiled by treelite, explained exactly."""
    import lightgbm

    X, y = data["native"]
    model = lightgbm.LGBMClassifier(n_estimators=30, verbose=-1).fit(X.iloc[:TRAIN], y.iloc[:TRAIN])
    pkg = deploykit.package(model, name="compiled-lgbm", X_train=X.iloc[:TRAIN], y_train=y.iloc[:TRAIN],
                            X_test=X.iloc[TRAIN:GATE], y_test=y.iloc[TRAIN:GATE], verbose=False)
    return pkg, model, X.iloc[GATE:]


def test_the_package_serves_on_treelite_with_parity_in_a_clean_process(native_package):
    pkg, model, held_out = native_package
    fast = pkg.manifest["serving"]["fast_path"]
    assert fast["enabled"] and fast["engine"] == "treelite" and pkg.parity["ok"]
    assert "treelite" in dict(r.split("==") for r in pkg.requirements)
    assert "x-deploykit-path: treelite" in pkg.card.to_dict()["deployment"]["serving_path"]
    runtime = ModelRuntime.load(pkg.model_dir)
    assert runtime.path == "treelite"
    columns = runtime.columns({"instances": records(held_out)})
    assert runtime.labels(columns) == model.predict(held_out).tolist()
    assert np.abs(np.asarray(runtime.probabilities(columns)) - model.predict_proba(held_out)).max() <= 1e-5


def test_native_categories_are_explained_by_tree_shap_with_additivity(native_package):
    pkg, model, held_out = native_package
    assert pkg.explainer == "shap.TreeExplainer" and pkg.manifest["explainer"]["output"] == "log_odds"
    runtime = ModelRuntime.load(pkg.model_dir)
    rows = held_out.iloc[:10]
    explanation = runtime.explain_columns(runtime.columns({"instances": records(rows)}))
    values = np.asarray(explanation["values"])
    assert values.shape == (10, rows.shape[1]) and explanation["explainer"] == "tree"
    assert np.allclose(np.asarray(explanation["base_values"]) + values.sum(1), explanation["outputs"], atol=1e-6)
    p = model.predict_proba(rows)[:, 1]
    assert np.allclose(explanation["outputs"], np.log(p / (1 - p)), atol=1e-6)
    assert np.abs(values[:, list(rows.columns).index("contract")]).max() > 0  # a category column is credited


def test_the_compiled_path_starts_without_loading_the_model_object(native_package):
    """Only the chosen path loads: no skops, scikit-learn or LightGBM until something needs the model."""
    pkg, _, held_out = native_package
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from deploykit_runtime.model import ModelRuntime; r = ModelRuntime.load(sys.argv[1] + '/model');"
        "r.labels(r.columns({'instances': json.loads(sys.argv[2])}));"
        "print(json.dumps([m for m in ('skops', 'sklearn', 'lightgbm', 'shap') if m in sys.modules]))"
    )
    import json

    out = subprocess.run([sys.executable, "-I", "-c", code, str(pkg.path), json.dumps(records(held_out.iloc[:2]))],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_a_package_that_cannot_compile_records_why_and_serves_the_plain_path(data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = data["numeric"]
    model = make_pipeline(FunctionTransformer(np.tanh), LogisticRegression()).fit(X.iloc[:TRAIN], y.iloc[:TRAIN])
    pkg = deploykit.package(model, name="compiled-none", X_train=X.iloc[:TRAIN], y_train=y.iloc[:TRAIN],
                            X_test=X.iloc[TRAIN:GATE], explain=False, verbose=False)
    fast = pkg.manifest["serving"]["fast_path"]
    assert fast["enabled"] is False and "FunctionTransformer" in fast["reason"] and pkg.parity["ok"]
    serving = pkg.card.to_dict()["deployment"]["serving_path"]
    assert "x-deploykit-path: sklearn" in serving and fast["reason"] in serving
    runtime = ModelRuntime.load(pkg.model_dir)
    assert runtime.path == "sklearn" and runtime.fast is None
    held_out = X.iloc[GATE:]
    assert runtime.labels(runtime.columns({"instances": records(held_out)})) == model.predict(held_out).tolist()
