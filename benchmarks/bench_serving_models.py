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


def make_estimator(key: str):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    if key == "rf":
        return RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED)
    if key == "hgb":
        return HistGradientBoostingClassifier(random_state=SEED)
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
        return self.X_test.iloc[:n].to_dict(orient="records")

    def body(self, kind: str, n: int) -> bytes:
        """The JSON body of an ``n``-row request in a server's format (see ``bench_serving_servers``)."""
        if kind == "records":
            payload = {"instances": self.rows(n)}
        elif kind == "arrays":
            payload = {"instances": self.X_test.iloc[:n].to_numpy().tolist()}
        elif kind == "mlflow":
            payload = {"dataframe_records": self.rows(n)}
        else:
            raise ValueError(kind)
        return json.dumps(payload).encode()

    def expected(self, n: int) -> list:
        return self.model.predict(self.X_test.iloc[:n]).tolist()


def make_data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=TRAIN_ROWS + TEST_ROWS, n_features=FEATURES, n_informative=12, n_redundant=4, random_state=SEED
    )
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(FEATURES)])
    target = pd.Series(y, name="label")
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
