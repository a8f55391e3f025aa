"""Choosing the SHAP explainer for a model when it is packaged, and checking it explains faithfully.

TreeExplainer for tree ensembles, LinearExplainer for linear models, Kernel SHAP over a k-means summary
of the background otherwise. LightGBM and XGBoost models that read category columns natively get the
DataFrame (TreeExplainer then runs their own pred_contrib / pred_contribs, the same tree SHAP);
HistGradientBoosting models with categorical splits, which TreeExplainer cannot read, get the same
algorithm in numpy (:mod:`deploykit._runtime.treeshap`). For a Pipeline, the preprocessing is probed to learn which input column each
transformed feature comes from, so values can be summed back onto the original columns; when some
feature depends on several columns, the whole pipeline is explained on the raw columns instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._runtime.explain import KERNEL, LINEAR, RAW, TRANSFORMED, TREE, Explainer, dense, split_pipeline

_TREE_MODULES = ("sklearn.ensemble", "sklearn.tree", "xgboost", "lightgbm", "catboost")
_TREE_PROBABILITY = ("RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier", "ExtraTreeClassifier")
_NOT_TREES = ("Bagging", "Voting", "Stacking", "AdaBoost", "IsolationForest")


def _is_tree(estimator: Any) -> bool:
    cls = type(estimator)
    return cls.__module__.startswith(_TREE_MODULES) and not cls.__name__.startswith(_NOT_TREES)


def _is_linear(estimator: Any) -> bool:
    return type(estimator).__module__.startswith("sklearn.linear_model") and hasattr(estimator, "coef_")


def _kind_and_output(final: Any, task: str) -> tuple[str, str]:
    name = type(final).__name__
    if _is_tree(final):
        if task == "regression":
            return TREE, "value"
        return TREE, "probability" if name in _TREE_PROBABILITY else "log_odds"
    if _is_linear(final) and task != "multiclass":
        if task == "regression":
            return LINEAR, "value"
        if hasattr(final, "predict_proba") and getattr(final, "loss", "log_loss") in ("log_loss", "log"):
            return LINEAR, "log_odds"
    return KERNEL, "value" if task == "regression" else "probability"


def _has_categorical_splits(final: Any) -> bool:
    """A HistGradientBoosting model that splits on categories (its own encoder, or categorical_features)."""
    mask = getattr(final, "is_categorical_", None)
    return type(final).__name__.startswith("HistGradientBoosting") and mask is not None and bool(np.any(mask))


def _native_categories(final: Any, schema: dict) -> bool:
    """A model that reads category columns itself (no encoder before it): it gets the DataFrame."""
    reads_them = type(final).__module__.split(".")[0] in ("lightgbm", "xgboost") or _has_categorical_splits(final)
    return reads_them and any(c["kind"] in ("category", "string") for c in schema["columns"])


def _probe_values(column: dict, original: pd.Series, rng: np.random.Generator) -> pd.Series:
    n = len(original)
    if column.get("categories"):
        values = np.resize(np.asarray(column["categories"], dtype=object), n)
        values = values[rng.permutation(n)]
        return pd.Series(values, index=original.index).astype(original.dtype)
    return pd.Series(np.roll(original.to_numpy(), 1), index=original.index).astype(original.dtype)


def probe_groups(pre: Any, frame: pd.DataFrame, schema: dict, to_input) -> list[int] | None:
    """For each transformed feature, the index of the one input column it depends on; None if not a partition."""
    rng = np.random.default_rng(0)
    base = dense(pre.transform(to_input(frame)))
    owner = np.full(base.shape[1], -1)
    for j, column in enumerate(schema["columns"]):
        changed = np.zeros(base.shape[1], dtype=bool)
        for _ in range(2):
            perturbed = frame.copy()
            perturbed[column["name"]] = _probe_values(column, frame[column["name"]], rng)
            out = dense(pre.transform(to_input(perturbed)))
            changed |= ~np.isclose(out, base, equal_nan=True).all(axis=0)
        if np.any((owner[changed] != -1) & (owner[changed] != j)):
            return None  # a feature mixes several columns (PCA, interactions, custom code)
        owner[changed] = j
    if (owner == -1).any():
        return None
    return owner.tolist()


def model_outputs(model: Any, frame, explanation: dict, task: str, to_input) -> np.ndarray | None:
    """What the model itself says for ``explanation['output']``, to check the explainer against."""
    X = to_input(frame)
    if task == "regression":
        return np.asarray(model.predict(X), dtype="float64")
    proba = np.asarray(model.predict_proba(X), dtype="float64")
    classes = list(model.classes_)
    picked = [classes.index(c) for c in explanation["classes"]]
    p = np.clip(proba[np.arange(len(picked)), picked], 1e-15, 1 - 1e-15)
    if explanation["output"] == "probability":
        return p
    if task == "binary":
        return np.log(p / (1 - p))
    return None  # multiclass margins have no closed form from probabilities


def plan_explainer(model: Any, frame: pd.DataFrame, schema: dict, task: str, classes, to_input) -> dict:
    """Pick and verify the explainer; return its manifest entry."""
    pre, final = split_pipeline(model, TRANSFORMED)
    kind, output = _kind_and_output(final, task)
    groups = probe_groups(pre, frame, schema, to_input) if pre is not None else None
    space = TRANSFORMED if (pre is None or groups is not None) else RAW
    if space == RAW:
        kind, output = KERNEL, "value" if task == "regression" else "probability"
    config = {"kind": kind, "space": space, "output": output, "groups": groups, "k": 10}
    if kind == TREE and _has_categorical_splits(final):
        config["engine"] = "numpy"  # shap's TreeExplainer ignores HistGradientBoosting's categorical splits
    if kind == TREE and pre is None and _native_categories(final, schema):
        config["input"] = "frame"
    if kind != KERNEL and not _faithful(model, config, frame, schema, task, classes, to_input):
        config = {"kind": KERNEL, "space": RAW, "output": "value" if task == "regression" else "probability",
                  "groups": None, "k": 10}
    config["algorithm"] = {TREE: "shap.TreeExplainer", LINEAR: "shap.LinearExplainer",
                           KERNEL: "shap.KernelExplainer"}[config["kind"]]
    if config["kind"] == TREE and config.get("engine") == "numpy":
        config["algorithm"] = "deploykit tree SHAP (path-dependent, numpy)"
    config["seconds_per_row"] = seconds_per_row(model, config, frame, schema, task, classes, to_input)
    return config


def seconds_per_row(model, config, frame, schema, task, classes, to_input, target: float = 0.3) -> float:
    """What explaining one row costs, measured on background rows: the service's /explain budget
    (``limits={"explain_seconds": ...}``) is counted in it."""
    import time

    explainer = Explainer(model, config, schema, frame, task, classes, to_input)
    started = time.perf_counter()
    explainer.explain(frame.iloc[:1])  # the first call also warms SHAP up
    rows = max(1, min(len(frame), 50, int(target / max(time.perf_counter() - started, 1e-4))))
    started = time.perf_counter()
    explainer.explain(frame.iloc[:rows])
    return round((time.perf_counter() - started) / rows, 7)


def _faithful(model, config, frame, schema, task, classes, to_input) -> bool:
    sample = frame.iloc[: min(20, len(frame))]
    try:
        explanation = Explainer(model, config, schema, frame, task, classes, to_input).explain(sample)
    except Exception:
        return False
    expected = model_outputs(model, sample, explanation, task, to_input)
    if expected is None:
        return True
    got = np.asarray(explanation["outputs"])
    return bool(np.allclose(got, expected, rtol=1e-4, atol=1e-4))
