"""Data, models, request bodies and in-process floors for the serving benchmark.

The data are ``make_classification`` with fixed seeds, as a DataFrame with columns ``f0`` … ``f19``
(the model is fitted on the frame, so it carries feature names, as a notebook user's model would).
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

FEATURES = 20
TRAIN_ROWS, TEST_ROWS = 5000, 1000
SEED = 0

MODELS = {"rf": "RandomForest", "hgb": "HistGradientBoosting"}
ESTIMATORS = {
    "rf": "RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)",
    "hgb": "HistGradientBoostingClassifier(random_state=0)",
}
# The families of issue 15 (bench_families.py): key -> (label, estimator, data kind). Data kinds:
# "numeric" make_classification as above; "regression" make_regression, 20 features; "churn" the
# tutorials' churn table (numbers with missing values, text categories); "native" the same table with
# its text columns as pandas categories, read natively by LightGBM, XGBoost and HistGradientBoosting.
FAMILIES = {
    "rf": ("RandomForest", ESTIMATORS["rf"], "numeric"),
    "gb": ("GradientBoosting", "GradientBoostingClassifier(n_estimators=100, random_state=0)", "numeric"),
    "hgb": ("HistGradientBoosting", ESTIMATORS["hgb"], "numeric"),
    "logreg": ("LogisticRegression", "LogisticRegression(max_iter=1000)", "numeric"),
    "ridge": ("Ridge (linear regressor)", "Ridge(alpha=1.0)", "regression"),
    "lgbm": ("LightGBM", "LGBMClassifier(n_estimators=100, random_state=0)", "numeric"),
    "xgb": ("XGBoost", "XGBClassifier(n_estimators=100, max_depth=6, random_state=0)", "numeric"),
    "lgbm-cat": ("LightGBM, native categories", "LGBMClassifier(n_estimators=100, random_state=0)", "native"),
    "xgb-cat": ("XGBoost, native categories", "XGBClassifier(n_estimators=100, enable_categorical=True)", "native"),
    "hgb-cat": ("HistGradientBoosting, native categories", ESTIMATORS["hgb"], "native"),
    "pipeline": ("Pipeline: imputer, scaler, one-hot, RandomForest", "deploykit.demo.churn_pipeline()", "churn"),
}
MODELS.update({key: label for key, (label, _, _) in FAMILIES.items() if key not in MODELS})
ESTIMATORS.update({key: estimator for key, (_, estimator, _) in FAMILIES.items() if key not in ESTIMATORS})


def make_estimator(key: str):
    from sklearn import ensemble, linear_model

    makers = {
        "rf": lambda: ensemble.RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED),
        "hgb": lambda: ensemble.HistGradientBoostingClassifier(random_state=SEED),
        "hgb-cat": lambda: ensemble.HistGradientBoostingClassifier(random_state=SEED),
        "gb": lambda: ensemble.GradientBoostingClassifier(n_estimators=100, random_state=SEED),
        "logreg": lambda: linear_model.LogisticRegression(max_iter=1000),
        "ridge": lambda: linear_model.Ridge(alpha=1.0),
    }
    if key in makers:
        return makers[key]()
    if key in ("lgbm", "lgbm-cat"):
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=100, random_state=SEED, verbose=-1)
    if key in ("xgb", "xgb-cat"):
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=100, max_depth=6, random_state=SEED, enable_categorical=key == "xgb-cat")
    if key == "pipeline":
        from deploykit.demo import churn_pipeline

        return churn_pipeline()
    raise ValueError(f"unknown model {key!r}; choose from {sorted(MODELS)}")


@dataclass
class Fitted:
    key: str
    model: Any
    X_train: pd.DataFrame
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    floors: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return MODELS[self.key]

    def rows(self, n: int) -> list[dict]:
        return [{k: _json_value(v) for k, v in row.items()} for row in self.X_test.iloc[:n].to_dict(orient="records")]

    def dtypes(self) -> dict:
        """Column -> dtype, or the category list of a pandas category column: what the BentoML servers
        rebuild from JSON (``servers/trained_frame.py``)."""
        return {c: (list(self.X_train[c].cat.categories) if str(t) == "category" else str(t))
                for c, t in self.X_train.dtypes.items()}

    def body(self, kind: str, n: int) -> bytes:
        """The JSON body of an ``n``-row request in a server's format (see ``bench_serving_servers``)."""
        if kind == "records":
            payload = {"instances": self.rows(n)}
        elif kind == "arrays":
            payload = {"instances": [[_json_value(v) for v in row] for row in self.X_test.iloc[:n].to_numpy().tolist()]}
        elif kind == "mlflow":
            payload = {"dataframe_records": self.rows(n)}
        else:
            raise ValueError(kind)
        return json.dumps(payload).encode()

    def expected(self, n: int) -> list:
        return self.model.predict(self.X_test.iloc[:n]).tolist()


def _json_value(value: Any) -> Any:
    """JSON null for a missing number (json.dumps would write NaN, which is not JSON)."""
    return None if isinstance(value, float) and value != value else value


def make_data(kind: str = "numeric") -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    if kind != "numeric":
        return _make_other_data(kind)
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=TRAIN_ROWS + TEST_ROWS, n_features=FEATURES, n_informative=12, n_redundant=4, random_state=SEED
    )
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(FEATURES)])
    target = pd.Series(y, name="label")
    return frame.iloc[:TRAIN_ROWS], target.iloc[:TRAIN_ROWS], frame.iloc[TRAIN_ROWS:].reset_index(drop=True), \
        target.iloc[TRAIN_ROWS:].reset_index(drop=True)


def _make_other_data(kind: str) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    if kind == "regression":
        from sklearn.datasets import make_regression

        X, y = make_regression(n_samples=TRAIN_ROWS + TEST_ROWS, n_features=FEATURES, noise=10.0, random_state=SEED)
        frame, target = pd.DataFrame(X, columns=[f"f{i}" for i in range(FEATURES)]), pd.Series(y, name="value")
    else:
        from deploykit.demo import make_churn

        frame, target = make_churn(n=TRAIN_ROWS + TEST_ROWS, seed=SEED)
        if kind == "native":
            for column in ("contract", "internet", "payment_method"):
                frame[column] = frame[column].astype("category")
    return frame.iloc[:TRAIN_ROWS], target.iloc[:TRAIN_ROWS], frame.iloc[TRAIN_ROWS:].reset_index(drop=True), \
        target.iloc[TRAIN_ROWS:].reset_index(drop=True)


def fit(key: str, data: tuple) -> Fitted:
    X_train, y_train, X_test, y_test = data
    return Fitted(key, make_estimator(key).fit(X_train, y_train), X_train, y_train, X_test, y_test)


# -- in-process floors --------------------------------------------------------------------------------
def time_call(call: Callable[[], Any], *, budget_s: float, min_repeats: int = 5, max_repeats: int = 2000) -> dict:
    """Median and p90 of ``call`` in ms over as many repeats as fit in ``budget_s`` (after 3 warm-up calls)."""
    for _ in range(3):
        call()
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() < end):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "repeats": len(times)}


def measure_floors(fitted: Fitted, budget_s: float) -> dict:
    """The model's own calls, as the user trained it (DataFrame in), timed in this process."""
    import shap

    model = fitted.model
    one, hundred = fitted.X_test.iloc[:1], fitted.X_test.iloc[:100]
    floors = {
        "predict_1": time_call(lambda: model.predict(one), budget_s=budget_s),
        "predict_100": time_call(lambda: model.predict(hundred), budget_s=budget_s),
        "predict_proba_1": time_call(lambda: model.predict_proba(one), budget_s=budget_s),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.TreeExplainer(model)
        floors["tree_explainer_1"] = time_call(lambda: explainer.shap_values(one), budget_s=budget_s)
        floors["tree_explainer_100"] = time_call(
            lambda: explainer.shap_values(hundred), budget_s=budget_s, min_repeats=3, max_repeats=20
        )
    return floors


def predictions_of(kind: str, answer: Any) -> list | None:
    """The labels in a server's /predict answer, whatever its shape."""
    if isinstance(answer, dict):
        answer = answer.get("predictions")
    if isinstance(answer, list):
        return np.asarray(answer).ravel().tolist()
    return None
