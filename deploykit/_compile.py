"""Compiling a fitted model for the fast path: its preprocessing as a numpy plan, its estimator for an engine.

The model is split where the preprocessing ends. Everything before the final estimator becomes a plan
that :mod:`deploykit._runtime.prep` replays in numpy (float64); the final estimator is handed to a
compiled engine, tried in the order measured best (docs/benchmarks.md, "Compiled path for every family"):

1. ``onnx`` in double precision (skl2onnx): scikit-learn forests, single trees and linear models; the
   fastest where it converts (a 100-tree forest: about 10 µs for 1 row, 0.4 ms for 100). Linear models
   are exact; for trees skl2onnx rounds thresholds to float32 the way scikit-learn's float32 inputs
   need, but writes leaf values in float32 (probabilities within ~3e-8; ties: see ``_fastpath.TIES``).
2. ``treelite`` (its GTIL runtime, in the model's own precision): every tree ensemble of scikit-learn,
   LightGBM and XGBoost, native categorical splits included; exact (1e-16; XGBoost's own float32
   sums, 1e-7), about 3× slower than ONNX Runtime on forests for 100 rows.
3. ``onnx`` in single precision (skl2onnx, onnxmltools): what neither of the above takes; XGBoost
   tries it first (``_fastpath.engine_order``): it is XGBoost's own precision, and faster.

Each raises :class:`Unsupported` with the reason when it cannot take the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Unsupported(Exception):
    """This model (or one of its steps) has no compiled form here; the message says why."""


# -- the preprocessing plan --------------------------------------------------------------------------
def _floats(values) -> list | None:
    return None if values is None else [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _python(value):
    return value.item() if hasattr(value, "item") else value


def _step(step: Any) -> list[dict]:
    """The plan steps of one fitted scikit-learn transformer (a Pipeline gives several)."""
    name = type(step).__name__
    if step in (None, "passthrough"):
        return []
    if name == "Pipeline":
        return [s for _, sub in step.steps for s in _step(sub)]
    if name == "SimpleImputer":
        if step.add_indicator or not (step.missing_values is None or step.missing_values != step.missing_values):
            raise Unsupported("SimpleImputer with add_indicator or a missing_values other than NaN")
        fill = [_python(v) for v in step.statistics_]
        if any(isinstance(v, float) and v != v for v in fill):
            raise Unsupported("SimpleImputer with a column that was empty in training")
        return [{"op": "impute", "fill": fill}]
    if name == "StandardScaler":
        return [{"op": "standard", "mean": _floats(step.mean_) if step.with_mean else None,
                 "scale": _floats(step.scale_) if step.with_std else None}]
    if name == "MinMaxScaler":
        return [{"op": "minmax", "scale": _floats(step.scale_), "min": _floats(step.min_),
                 "clip": list(step.feature_range) if step.clip else None}]
    if name == "OneHotEncoder":
        if getattr(step, "_infrequent_enabled", False) or step.handle_unknown == "error":
            # "error": the service already refuses unseen categories, but a None the encoder never saw must fail too
            raise Unsupported(f"OneHotEncoder(handle_unknown={step.handle_unknown!r}) or with infrequent categories")
        drop = step.drop_idx_ if step.drop_idx_ is not None else [None] * len(step.categories_)
        return [{"op": "onehot", "categories": [[_python(c) for c in cats] for cats in step.categories_],
                 "drop": [None if d is None else int(d) for d in drop]}]
    if name == "OrdinalEncoder":
        unknown = step.unknown_value if step.handle_unknown == "use_encoded_value" else float("nan")
        return [{"op": "codes", "categories": [[_python(c) for c in cats] for cats in step.categories_],
                 "unknown": float(unknown), "missing": float(step.encoded_missing_value)}]
    raise Unsupported(f"{name} has no numpy form in deploykit's preprocessing (supported: SimpleImputer, "
                      "StandardScaler, MinMaxScaler, OneHotEncoder, OrdinalEncoder, ColumnTransformer, Pipeline)")


def _column_names(columns: Any, names: list[str]) -> list[str]:
    """A ColumnTransformer's column selection (names, indices, a slice or a boolean mask) as names."""
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, (list, tuple)) and all(isinstance(c, str) for c in columns):
        return list(columns)
    return [str(c) for c in np.atleast_1d(np.asarray(names, dtype=object)[columns])]


def _column_transformer(ct: Any, names: list[str]) -> list[dict]:
    blocks = []
    for name, transformer, columns in ct.transformers_:
        if transformer == "drop" or (name == "remainder" and transformer == "drop"):
            continue
        cols = _column_names(columns, names)
        if cols:
            blocks.append({"columns": cols, "steps": _step(transformer)})
    return blocks


def _native_codes(final: Any, schema: dict) -> list[dict]:
    """The one block a bare model reads: numbers as they are, categories as codes into the trained list."""
    columns = schema["columns"]
    textual = [c["name"] for c in columns if c["kind"] in ("category", "string")]
    if not textual:
        return [{"columns": [c["name"] for c in columns], "steps": []}]
    if any(not c.get("categories") for c in columns if c["name"] in textual):
        raise Unsupported("a text column without a fixed list of categories reaches the estimator")
    trained = {**_lightgbm_categories(final, schema), **_hgb_categories(final, schema)}
    categories = [trained.get(c["name"], c["categories"]) if c["name"] in textual else None for c in columns]
    return [{"columns": [c["name"] for c in columns], "steps": [{"op": "codes", "categories": categories}]}]


def _lightgbm_categories(final: Any, schema: dict) -> dict[str, list]:
    """LightGBM codes a category by its place in the list it was trained with (one per category column)."""
    lists = getattr(getattr(final, "booster_", None), "pandas_categorical", None) or []
    names = [c["name"] for c in schema["columns"] if c["dtype"] == "category"]
    return {name: [_python(v) for v in cats] for name, cats in zip(names, lists)} if len(names) == len(lists) else {}


def preprocessing_plan(model: Any, schema: dict) -> tuple[dict, Any]:
    """(plan, final estimator): the numpy plan of everything before the final estimator."""
    names = [c["name"] for c in schema["columns"]]
    steps = [s for _, s in model.steps] if hasattr(model, "steps") else [model]
    final, before = steps[-1], [s for s in steps[:-1] if s not in (None, "passthrough")]
    if not before:
        blocks, after = _native_codes(final, schema), []
    elif type(before[0]).__name__ == "ColumnTransformer":
        blocks = _column_transformer(before[0], names)
        after = [s for step in before[1:] for s in _step(step)]
    else:
        blocks, after = [{"columns": names, "steps": [s for step in before for s in _step(step)]}], []
    width = getattr(final, "n_features_in_", None)
    if width is None:
        raise Unsupported(f"{type(final).__name__} does not record how many features it takes")
    plan = {"blocks": blocks, "after": after, "width": int(width)}
    if _reads_float32(final):
        plan["float32"] = True
    return plan, final


def _reads_float32(final: Any) -> bool:
    """scikit-learn's decision trees (forests, gradient boosting) compare float32(x) with their thresholds.

    A float64 value just above a threshold can round down onto it, so the compiled path rounds the same
    way before the engine sees the row; without it, the churn pipeline's scaled columns flipped a label.
    """
    module = type(final).__module__
    return module.startswith(("sklearn.ensemble._forest", "sklearn.ensemble._gb", "sklearn.tree"))


# -- the engines ---------------------------------------------------------------------------------------
def _library(final: Any) -> str:
    return type(final).__module__.split(".")[0]


def onnx_bytes(final: Any, width: int, precision: str) -> bytes:
    """The final estimator as ONNX, taking one (rows × width) matrix named X."""
    library = _library(final)
    if library == "sklearn":
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

        tensor = DoubleTensorType if precision == "double" else FloatTensorType
        options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
        return to_onnx(final, initial_types=[("X", tensor([None, width]))], options=options,
                       target_opset={"": 17, "ai.onnx.ml": 3}).SerializeToString()
    if precision == "double":
        raise Unsupported(f"onnxmltools converts {library} models in single precision only")
    if library not in ("lightgbm", "xgboost"):
        raise Unsupported(f"{type(final).__name__} ({library}) has no ONNX converter here")
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    convert = onnxmltools.convert_lightgbm if library == "lightgbm" else onnxmltools.convert_xgboost
    options = {"zipmap": False} if library == "lightgbm" else {}
    model = final if library == "lightgbm" else _xgboost_with_positional_names(final)
    onx = convert(model, initial_types=[("X", FloatTensorType([None, width]))], target_opset=15, **options)
    return onx.SerializeToString()


def treelite_bytes(final: Any) -> bytes:
    """The final estimator as a serialised treelite model (trees only)."""
    import treelite

    library = _library(final)
    if library == "lightgbm":
        model = treelite.frontend.from_lightgbm(final.booster_)
    elif library == "xgboost":
        model = treelite.frontend.from_xgboost_json(_xgboost_json_without_categories(final))
    elif library == "sklearn" and is_tree_ensemble(final):
        model = treelite.sklearn.import_model(_hgb_with_coded_categories(final))
    else:
        raise Unsupported(f"{type(final).__name__} ({library}) is not a tree ensemble treelite reads")
    return bytes(model.serialize_bytes())


def is_tree_ensemble(final: Any) -> bool:
    """A scikit-learn forest, gradient boosting or decision tree (treelite reads these; ONNX's are float32 inside)."""
    module = type(final).__module__
    return module.startswith(("sklearn.ensemble._forest", "sklearn.ensemble._gb", "sklearn.ensemble._hist_gradient_boosting",
                              "sklearn.tree"))


def _xgboost_with_positional_names(final: Any) -> Any:
    """A copy whose booster names its features f0, f1, ...: the only names onnxmltools' converter reads
    (the compiled path feeds columns by position anyway)."""
    import copy

    booster = final.get_booster().copy()
    if booster.feature_types and "c" in booster.feature_types:
        raise Unsupported("onnxmltools does not convert XGBoost's categorical splits")
    booster.feature_names = [f"f{i}" for i in range(booster.num_features())]
    clone = copy.copy(final)
    clone._Booster = booster
    return clone


def _xgboost_json_without_categories(final: Any) -> str:
    """XGBoost 3 stores the training categories in the model, which treelite refuses; the compiled path
    codes categories itself (their place in the trained list, which is what the trees split on)."""
    import json

    document = json.loads(bytes(final.get_booster().save_raw("json")))
    document["learner"]["gradient_booster"].get("model", {}).pop("cats", None)
    return json.dumps(document)


def _hgb_with_coded_categories(final: Any) -> Any:
    """A HistGradientBoosting model whose category encoder knows codes 0..k-1 instead of strings.

    treelite reads integer categories only; the compiled path sends each category's place in the
    trained list, so the copy's encoder maps code k to the bin the string at place k had.
    """
    import copy

    pre = getattr(final, "_preprocessor", None)
    if pre is None or not any(np.asarray(c).dtype.kind in "OUS" for c in pre.transformers_[0][1].categories_):
        return final
    clone = copy.copy(final)
    clone._preprocessor = copy.deepcopy(pre)
    encoder = clone._preprocessor.transformers_[0][1]
    encoder.categories_ = [np.arange(len(c), dtype=np.int64) for c in encoder.categories_]
    return clone


def _hgb_categories(final: Any, schema: dict) -> dict[str, list]:
    """The category lists a HistGradientBoosting model's own encoder learnt, by column name."""
    pre = getattr(final, "_preprocessor", None)
    if pre is None or type(final).__name__ not in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        return {}
    _, encoder, columns = pre.transformers_[0]
    names = _column_names(columns, [c["name"] for c in schema["columns"]])
    return {name: [_python(v) for v in cats] for name, cats in zip(names, encoder.categories_)}
