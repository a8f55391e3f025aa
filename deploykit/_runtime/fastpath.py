"""The compiled fast path: the model converted to ONNX and run by ONNX Runtime on one thread.

A fitted scikit-learn model spends milliseconds per call in Python and joblib overhead, however few
rows it gets; the same trees or coefficients in ONNX Runtime answer in microseconds. The conversion is
made and checked when the package is made (:mod:`deploykit._fastpath`): it serves only if it gave the
same label on every test row and probabilities within the recorded tolerance. Requests reach it as
validated columns; no DataFrame is built on this path.
"""

from __future__ import annotations

import numpy as np

from .artifacts import read_verified


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

    def _numeric(self, values: list) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=self.float_type)

    def feed(self, columns: dict[str, list]) -> dict[str, np.ndarray]:
        if self.per_column:
            out = {}
            for column in self.columns:
                values = columns[column["name"]]
                if column["kind"] in ("category", "string"):
                    out[column["name"]] = np.array(values, dtype=object).reshape(-1, 1)
                else:
                    out[column["name"]] = self._numeric(values).reshape(-1, 1)
            return out
        matrix = np.column_stack([self._numeric(columns[c["name"]]) for c in self.columns])
        return {self.config["input_name"]: matrix}

    def run(self, columns: dict[str, list]) -> tuple[list, np.ndarray | None]:
        """(predictions, probabilities or None) for validated columns."""
        results = self.session.run(None, self.feed(columns))
        if self.task == "regression":
            return np.asarray(results[0], dtype="float64").reshape(-1).tolist(), None
        labels = np.asarray(results[0]).reshape(-1)
        return labels.tolist(), np.asarray(results[1], dtype="float64")
