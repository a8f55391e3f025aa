"""The compiled fast path: the model converted to ONNX and run by ONNX Runtime on one thread.

A fitted scikit-learn model spends milliseconds per call in Python and joblib overhead, however few
rows it gets; the same trees or coefficients in ONNX Runtime answer in microseconds. The conversion is
made and checked when the package is made (:mod:`deploykit._fastpath`): it serves only if it gave the
same label on every test row and probabilities within the recorded tolerance. Requests reach it as
validated columns; no DataFrame is built on this path. Its probabilities are clipped to [0, 1] and
each row renormalised to sum to 1: ONNX Runtime's float arithmetic otherwise strays by about 1e-7 on
either side, and code that takes log(p) or checks the range would break.
"""

from __future__ import annotations

import numpy as np

from .artifacts import read_verified
from .errors import InputError


class FastPath:
    """An ONNX Runtime session fed straight from validated request columns."""

    def __init__(self, directory, config: dict, schema: dict, task: str) -> None:
        import onnxruntime as ort

        data = read_verified(directory / config["file"], config["sha256"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.config, self.task = config, task
        self.columns = schema["columns"]
        self.float_type = np.float64 if config["precision"] == "double" else np.float32
        self.per_column = config["inputs"] == "columns"
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _numeric(self, name: str, values: list) -> np.ndarray:
        array = np.array([np.nan if v is None else v for v in values], dtype=self.float_type)
        if self.float_type is np.float32 and np.isinf(array).any():  # validated finite, so float32 overflowed
            row = int(np.flatnonzero(np.isinf(array))[0])
            raise InputError(
                f"row {row}, column {name!r}: {values[row]!r} is outside the range of this model's compiled "
                "fast path (float32, ±3.4e38)", status=422,
                details=[{"row": row, "column": name, "problem": "outside the float32 range (±3.4e38)"}])
        return array

    def feed(self, columns: dict[str, list]) -> dict[str, np.ndarray]:
        if self.per_column:
            out = {}
            for column in self.columns:
                values = columns[column["name"]]
                if column["kind"] in ("category", "string"):
                    out[column["name"]] = np.array(values, dtype=object).reshape(-1, 1)
                else:
                    out[column["name"]] = self._numeric(column["name"], values).reshape(-1, 1)
            return out
        matrix = np.column_stack([self._numeric(c["name"], columns[c["name"]]) for c in self.columns])
        return {self.config["input_name"]: matrix}

    def run(self, columns: dict[str, list]) -> tuple[list, np.ndarray | None]:
        """(predictions, probabilities or None) for validated columns."""
        results = self.session.run(None, self.feed(columns))
        if self.task == "regression":
            return np.asarray(results[0], dtype="float64").reshape(-1).tolist(), None
        labels = np.asarray(results[0]).reshape(-1)
        return labels.tolist(), normalised(np.asarray(results[1], dtype="float64"))


def normalised(probabilities: np.ndarray) -> np.ndarray:
    """Each row clipped to [0, 1] and rescaled to sum to 1."""
    clipped = np.clip(probabilities, 0.0, 1.0)
    totals = clipped.sum(axis=1, keepdims=True)
    return np.divide(clipped, totals, out=np.full_like(clipped, 1.0 / clipped.shape[1]), where=totals > 0)
