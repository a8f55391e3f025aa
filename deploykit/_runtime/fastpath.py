"""The compiled fast path: the model in a compiled engine (ONNX Runtime or treelite), on one thread.

A fitted scikit-learn model spends milliseconds per call in Python and joblib overhead, however few
rows it gets; the same trees or coefficients in a compiled engine answer in microseconds. The
compilation is made and checked when the package is made (:mod:`deploykit._fastpath`): it serves only if
it gave the same label on every test row and probabilities within the recorded tolerance. Requests reach
it as validated columns; no DataFrame is built on this path. A package's preprocessing, when it has one,
runs first in numpy (:mod:`.prep`) and only the final estimator is compiled (``inputs: "prep"``); older
packages hold the whole pipeline as ONNX (``inputs: "columns"`` or ``"matrix"``). Probabilities are
clipped to [0, 1] and each row renormalised to sum to 1: float arithmetic otherwise strays by about
1e-7 on either side, and code that takes log(p) or checks the range would break.
"""

from __future__ import annotations

import numpy as np

from .artifacts import read_verified
from .errors import InputError


class OnnxEngine:
    name = "onnx"

    def __init__(self, data: bytes, config: dict) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.float_type = np.float64 if config["precision"] == "double" else np.float32
        self.input_name = config.get("input_name", "X")

    def run(self, feed: dict) -> list:
        return self.session.run(None, feed)

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (classifiers) or values (regressors) for a float64 matrix."""
        results = self.run({self.input_name: X.astype(self.float_type, copy=False)})
        return np.asarray(results[1] if len(results) > 1 else results[0], dtype=np.float64)


class TreeliteEngine:
    name = "treelite"

    def __init__(self, data: bytes, config: dict) -> None:
        import treelite

        self.model = treelite.Model.deserialize_bytes(data)
        self.gtil = treelite.gtil

    def scores(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.gtil.predict(self.model, X, nthread=1), dtype=np.float64).reshape(len(X), -1)


ENGINES = {"onnx": OnnxEngine, "treelite": TreeliteEngine}


def tidy(scores: np.ndarray, task: str) -> np.ndarray:
    """Regression values as a vector; class probabilities clipped to [0, 1], two columns for binary, rows summing to 1."""
    if task == "regression":
        return scores.reshape(-1)
    if scores.shape[1] == 1:  # a binary model that gives the positive class only
        scores = np.column_stack([1.0 - scores[:, 0], scores[:, 0]])
    return normalised(scores)


def normalised(probabilities: np.ndarray) -> np.ndarray:
    """Each row clipped to [0, 1] and rescaled to sum to 1 (an all-zero row becomes uniform)."""
    clipped = np.clip(probabilities, 0.0, 1.0)
    totals = clipped.sum(axis=1, keepdims=True)
    return np.divide(clipped, totals, out=np.full_like(clipped, 1.0 / clipped.shape[1]), where=totals > 0)


class FastPath:
    """A compiled model fed straight from validated request columns."""

    def __init__(self, directory, config: dict, schema: dict, task: str, classes: list | None = None) -> None:
        self.config, self.task = config, task
        self.engine_name = config.get("engine", "onnx")
        self.engine = ENGINES[self.engine_name](read_verified(directory / config["file"], config["sha256"]), config)
        self.columns = schema["columns"]
        self.classes = np.asarray(classes, dtype=object) if classes is not None else None
        self.prep = None
        if config.get("inputs") == "prep":
            import json

            from .prep import Preprocessor

            plan = json.loads(read_verified(directory / config["prep"]["file"], config["prep"]["sha256"]))
            self.prep = Preprocessor(plan, {c["name"]: c["kind"] for c in self.columns})

    def run(self, columns: dict[str, list]) -> tuple[list, np.ndarray | None]:
        """(predictions, probabilities or None) for validated columns."""
        if self.prep is None:
            return self._run_whole(columns)
        scores = tidy(self.engine.scores(self.prep.transform(columns)), self.task)
        if self.task == "regression":
            return scores.tolist(), None
        # the first class within `ties` of the top one: an exact tie goes to the first, as in scikit-learn
        top = scores >= scores.max(axis=1, keepdims=True) - self.config.get("ties", 0.0)
        return self.classes[top.argmax(axis=1)].tolist(), scores

    # -- packages whose whole pipeline is one ONNX graph ------------------------------------------------
    def _numeric(self, name: str, values: list) -> np.ndarray:
        float_type = self.engine.float_type
        array = np.array([np.nan if v is None else v for v in values], dtype=float_type)
        if float_type is np.float32 and np.isinf(array).any():  # validated finite, so float32 overflowed
            row = int(np.flatnonzero(np.isinf(array))[0])
            raise InputError(
                f"row {row}, column {name!r}: {values[row]!r} is outside the range of this model's compiled "
                "fast path (float32, ±3.4e38)", status=422,
                details=[{"row": row, "column": name, "problem": "outside the float32 range (±3.4e38)"}])
        return array

    def feed(self, columns: dict[str, list]) -> dict[str, np.ndarray]:
        if self.config["inputs"] == "columns":
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

    def _run_whole(self, columns: dict[str, list]) -> tuple[list, np.ndarray | None]:
        results = self.engine.run(self.feed(columns))
        if self.task == "regression":
            return np.asarray(results[0], dtype="float64").reshape(-1).tolist(), None
        labels = np.asarray(results[0]).reshape(-1)
        return labels.tolist(), tidy(np.asarray(results[1], dtype="float64"), self.task)
