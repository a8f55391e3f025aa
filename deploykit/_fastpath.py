"""Choosing the compiled fast path when a package is made, and proving it before it may serve.

The model is converted with skl2onnx, in double precision where ONNX Runtime supports every operator,
else in single precision, and replayed through the exact request path the service uses on every test
row. It is enabled only if every label is identical, every probability (or regression value) is
within :data:`TOLERANCE` of the notebook's model and every probability lies in [0, 1] with each row
summing to 1; otherwise the package records why and the service
runs the model itself (the plain path).
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


def plan_fast_path(model: Any, facts: Any, schema: dict, frame, model_dir: Path) -> dict:
    """Convert, check on every row of ``frame`` (test data), and write ``model.onnx`` if it passes."""
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError:
        return _disabled("skl2onnx and onnxruntime are not installed (pip install 'deploykit[fast]')")
    why = _sklearn_only(model)
    if why:
        return _disabled(why)
    from sklearn.compose import ColumnTransformer

    first = model.steps[0][1] if hasattr(model, "steps") else model
    per_column = isinstance(first, ColumnTransformer)
    if not per_column and any(c["kind"] in ("category", "string") for c in schema["columns"]):
        return _disabled("text or category columns reach the estimator without a ColumnTransformer")
    frame = frame.iloc[:MAX_ROWS]
    frame = frame.iloc[valid_indices(schema, records(frame))]
    reasons = []
    for precision in ("double", "float"):
        from ._runtime.fastpath import FastPath

        try:
            data = _convert(model, schema, per_column, precision)
            record = {"file": "model.onnx", "sha256": artifacts.sha256_bytes(data), "precision": precision,
                      "inputs": "columns" if per_column else "matrix", "input_name": "X"}
            (model_dir / "model.onnx").write_bytes(data)
            fast = FastPath(model_dir, record, schema, facts.task)
            mismatches, diff = _compare(model, facts, schema, frame, fast)
        except Exception as exc:  # an operator without a converter or an ONNX Runtime kernel
            reasons.append(f"{precision}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            continue
        if mismatches == 0 and diff <= TOLERANCE:
            return {"enabled": True, "tolerance": TOLERANCE, "rows_checked": len(frame),
                    "label_mismatches": 0, "max_difference": diff, **record}
        reasons.append(f"{precision}: {mismatches} of {len(frame)} labels differ, max difference {diff:.2e}")
    (model_dir / "model.onnx").unlink(missing_ok=True)
    return _disabled("; ".join(reasons))
