"""Tree explanations for every tree family: exact tree SHAP (TreeExplainer, the libraries' own
contributions, or deploykit's numpy tree SHAP for HistGradientBoosting's categorical splits), additive."""

import numpy as np
import pandas as pd
import pytest

from deploykit._explain import plan_explainer
from deploykit._runtime.explain import Explainer
from deploykit._runtime.treeshap import HistTreeShap
from deploykit._schema import infer_schema


@pytest.fixture(scope="module")
def numeric():
    from sklearn.datasets import make_classification

    X, y = make_classification(800, 8, n_informative=6, n_classes=3, random_state=1)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]), y


@pytest.fixture(scope="module")
def native():
    from deploykit.demo import make_churn

    X, y = make_churn(n=800, seed=5)
    for column in ("contract", "internet", "payment_method"):
        X[column] = X[column].astype("category")
    return X, y


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_numpy_tree_shap_equals_tree_explainer_where_both_apply(task, numeric):
    import shap
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    X, y = numeric
    if task == "regression":
        model = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(X, y * 2.5)
    else:
        model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y if task == "multiclass" else y > 0)
    ours, theirs = HistTreeShap(model), shap.TreeExplainer(model)
    rows = X.to_numpy()[:40]
    assert np.abs(ours.shap_values(rows) - np.asarray(theirs.shap_values(rows))).max() < 1e-10
    assert np.allclose(ours.expected_value, theirs.expected_value, atol=1e-10)


def _explain(model, X, y, rows):
    schema = infer_schema(X)
    classes = sorted(set(np.asarray(y).tolist()))
    config = plan_explainer(model, X.iloc[:100], schema, "binary", classes, lambda f: f)
    explainer = Explainer(model, config, schema, X.iloc[:100], "binary", classes)
    return config, explainer.explain(rows)


@pytest.mark.parametrize("family", ["hist-gradient-boosting", "lightgbm", "xgboost"])
def test_native_categories_get_exact_tree_shap_not_kernel(family, native):
    import lightgbm
    import xgboost
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = native
    if family == "hist-gradient-boosting":
        X = X.drop(columns="total_charges")  # HistGradientBoosting's categorical path, numbers complete
    make = {"hist-gradient-boosting": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
            "lightgbm": lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1),
            "xgboost": lambda: xgboost.XGBClassifier(n_estimators=30, enable_categorical=True, tree_method="hist")}
    model = make[family]().fit(X.iloc[:700], y[:700])
    config, explanation = _explain(model, X.iloc[:700], y[:700], X.iloc[-25:])
    assert config["kind"] == "tree" and config["output"] == "log_odds" and config.get("input") == "frame"
    assert config["algorithm"] == ("deploykit tree SHAP (path-dependent, numpy)" if family.startswith("hist")
                                   else "shap.TreeExplainer")
    values = np.asarray(explanation["values"])
    assert np.allclose(np.asarray(explanation["base_values"]) + values.sum(1), explanation["outputs"], atol=1e-6)
    p = model.predict_proba(X.iloc[-25:])[:, 1]
    assert np.allclose(explanation["outputs"], np.log(p / (1 - p)), atol=1e-5)
    contract = list(X.columns).index("contract")
    assert np.abs(values[:, contract]).max() > 0
