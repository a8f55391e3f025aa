"""Choosing the compiled fast path when a package is made, and proving it before it may serve.

The model is split where its preprocessing ends (:mod:`deploykit._compile`): the preprocessing becomes a
numpy plan run in float64, the final estimator goes to a compiled engine, tried in the order measured
best: ONNX Runtime in double precision (forests, linear models), treelite (every other tree ensemble),
ONNX Runtime in single precision. When the
preprocessing has no numpy form, the whole pipeline is converted with skl2onnx as before. Each candidate
is replayed through the exact request path the service uses on every test row, and the first that gives
every label identical, every probability (or regression value) within :data:`TOLERANCE` of the
notebook's model and every probability in [0, 1] with each row summing to 1 is chosen; otherwise the package records why each was refused and the service runs the
model itself (the plain path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._runtime import artifacts
from ._runtime.schema import InstanceValidator
from ._schema import records, valid_indices

TOLERANCE = 1e-5
MAX_ROWS = 5000


def _disabled(reason: str) -> dict:
    return {"enabled": False, "reason": reason, "tolerance": TOLERANCE}


def _sklearn_only(model: Any) -> str | None:
    """Why skl2onnx cannot take this model, or None."""
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in model.steps] if isinstance(model, Pipeline) else [model]
    for step in steps:
        module = type(step).__module__
        if not module.startswith("sklearn."):
            return f"{type(step).__name__} ({module}) has no ONNX converter here"
    return None


def _initial_types(schema: dict, per_column: bool, precision: str):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if precision == "double" else FloatTensorType
    if not per_column:
        return [("X", number([None, len(schema["columns"])]))]
    types = []
    for column in schema["columns"]:
        if column["kind"] in ("category", "string"):
            if column.get("categories") and not all(isinstance(c, str) for c in column["categories"]):
                raise TypeError(f"column {column['name']!r} has non-string categories")
            types.append((column["name"], StringTensorType([None, 1])))
        else:
            types.append((column["name"], number([None, 1])))
    return types


def _convert(model: Any, schema: dict, per_column: bool, precision: str) -> bytes:
    from skl2onnx import to_onnx

    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    onx = to_onnx(model, initial_types=_initial_types(schema, per_column, precision), options=options,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    return onx.SerializeToString()


def _compare(model, facts, schema, frame, fast) -> tuple[int, float]:
    """(label mismatches, max probability/value difference) of the fast path against the model."""
    columns = InstanceValidator(schema).columns_of(records(frame))
    labels, probabilities = fast.run(columns)
    X = frame.to_numpy() if facts.input_kind == "array" else frame
    if facts.task == "regression":
        diff = np.abs(np.asarray(labels) - np.asarray(model.predict(X), dtype="float64"))
        scale = np.maximum(1.0, np.abs(np.asarray(labels)))
        return int((diff / scale > TOLERANCE).sum()), float((diff / scale).max())
    expected = np.asarray(model.predict(X)).tolist()
    mismatches = sum(a != b for a, b in zip(labels, expected))
    if not probabilities_in_range(probabilities):
        return mismatches, float("inf")  # code that takes log(p) or checks the range would break
    return mismatches, float(np.abs(probabilities - model.predict_proba(X)).max())


def probabilities_in_range(probabilities) -> bool:
    """Every probability within [0, 1] and every row summing to 1 (to 1e-9)."""
    p = np.asarray(probabilities, dtype="float64")
    return bool(p.size == 0 or (((p >= 0) & (p <= 1)).all() and np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-9)))


# -- candidates: (engine, precision, what to write) --------------------------------------------------
# skl2onnx writes a forest's leaf values in float32: probabilities move by up to ~3e-8, enough to break
# an exact tie (0.5 / 0.5, which scikit-learn gives to the first class) the other way. Classes within
# TIES of the top are treated as tied, and the first wins, as scikit-learn's argmax does.
TIES = 1e-7
ENGINE_ORDER = (("onnx", "double"), ("treelite", "native"), ("onnx", "float"))
# XGBoost itself reads features and sums leaves in float32: ONNX Runtime in single precision is its own
# precision, as close as treelite (1e-7) and 2-4 times faster (docs/benchmarks.md)
XGBOOST_ORDER = (("onnx", "float"), ("treelite", "native"))
REQUIRES = {"onnx": ("onnxruntime",), "treelite": ("treelite",)}


def engine_order(final: Any) -> tuple:
    return XGBOOST_ORDER if type(final).__module__.startswith("xgboost") else ENGINE_ORDER
SUFFIX = {"onnx": "onnx", "treelite": "treelite"}


def _engine_missing(engine: str) -> str | None:
    import importlib.util

    module = "onnxruntime" if engine == "onnx" else "treelite"
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'deploykit[fast]')"
    return None


def _split_candidates(model: Any, schema: dict, model_dir: Path):
    """Yield (record, None) for each compiled form of the final estimator, or (None, reason) for each refused."""
    from ._compile import Unsupported, is_tree_ensemble, onnx_bytes, preprocessing_plan, treelite_bytes

    try:
        plan, final = preprocessing_plan(model, schema)
    except Unsupported as exc:
        yield None, f"preprocessing: {exc}"
        return
    prep = _json_file(model_dir, "prep.json", plan)
    for engine, precision in engine_order(final):
        label = f"{engine} ({precision})"
        missing = _engine_missing(engine)
        if missing:
            yield None, f"{label}: {missing}"
            continue
        try:
            data = onnx_bytes(final, plan["width"], precision) if engine == "onnx" else treelite_bytes(final)
        except Exception as exc:  # an estimator or operator without a converter
            yield None, f"{label}: {_one_line(exc)}"
            continue
        filename = f"model.{SUFFIX[engine]}"
        (model_dir / filename).write_bytes(data)
        record = {"engine": engine, "file": filename, "sha256": artifacts.sha256_bytes(data), "precision": precision,
                  "inputs": "prep", "prep": prep, "requires": list(REQUIRES[engine])}
        if engine == "onnx" and is_tree_ensemble(final):
            record["ties"] = TIES
        yield record, label


def _whole_candidates(model: Any, schema: dict, model_dir: Path):
    """The whole pipeline as one ONNX graph (skl2onnx), for preprocessing the numpy plan does not cover."""
    why = _sklearn_only(model) or _engine_missing("onnx")
    if why:
        yield None, f"whole pipeline as ONNX: {why}"
        return
    from sklearn.compose import ColumnTransformer

    first = model.steps[0][1] if hasattr(model, "steps") else model
    per_column = isinstance(first, ColumnTransformer)
    if not per_column and any(c["kind"] in ("category", "string") for c in schema["columns"]):
        yield None, "whole pipeline as ONNX: text or category columns reach the estimator without a ColumnTransformer"
        return
    for precision in ("double", "float"):
        label = f"whole pipeline as ONNX ({precision})"
        try:
            data = _convert(model, schema, per_column, precision)
        except Exception as exc:
            yield None, f"{label}: {_one_line(exc)}"
            continue
        (model_dir / "model.onnx").write_bytes(data)
        yield {"engine": "onnx", "file": "model.onnx", "sha256": artifacts.sha256_bytes(data), "precision": precision,
               "inputs": "columns" if per_column else "matrix", "input_name": "X", "requires": ["onnxruntime"]}, label


def _one_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"


def _json_file(directory: Path, filename: str, payload: Any) -> dict:
    import json

    data = json.dumps(payload).encode()
    (directory / filename).write_bytes(data)
    return {"file": filename, "sha256": artifacts.sha256_bytes(data)}


def plan_fast_path(model: Any, facts: Any, schema: dict, frame, model_dir: Path) -> dict:
    """Compile, check on every row of ``frame`` (test data), and keep the first candidate that passes."""
    from ._runtime.fastpath import FastPath

    frame = frame.iloc[:MAX_ROWS]
    frame = frame.iloc[valid_indices(schema, records(frame))]
    reasons = []
    for candidates in (_split_candidates, _whole_candidates):
        for record, label in candidates(model, schema, model_dir):
            if record is None:
                reasons.append(label)
                continue
            try:
                fast = FastPath(model_dir, record, schema, facts.task, facts.classes)
                mismatches, diff = _compare(model, facts, schema, frame, fast)
            except Exception as exc:  # an operator without an ONNX Runtime kernel, an engine that cannot load it
                reasons.append(f"{label}: {_one_line(exc)}")
                continue
            if mismatches == 0 and diff <= TOLERANCE:
                _remove_unused(model_dir, record)
                return {"enabled": True, "tolerance": TOLERANCE, "rows_checked": len(frame), "label_mismatches": 0,
                        "max_difference": diff, "refused": reasons, **record}
            reasons.append(f"{label}: {mismatches} of {len(frame)} labels differ, max difference {diff:.2e}")
    _remove_unused(model_dir, None)
    return _disabled("; ".join(reasons))


def _remove_unused(model_dir: Path, record: dict | None) -> None:
    keep = {record["file"], record.get("prep", {}).get("file")} if record else set()
    for filename in ("model.onnx", "model.treelite", "prep.json"):
        if filename not in keep:
            (model_dir / filename).unlink(missing_ok=True)
