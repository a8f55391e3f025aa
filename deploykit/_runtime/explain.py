"""SHAP explanations per prediction, reported on the columns of the original frame.

The explainer is chosen when the package is made (see :mod:`deploykit._explain`) and described in the
manifest; this module rebuilds it when the service starts. Where a Pipeline's preprocessing maps each
output feature to exactly one input column (one-hot encoders, scalers, imputers), SHAP runs on the final
estimator and the values of a column's one-hot features are summed back into that column. Otherwise the
whole pipeline is explained model-agnostically on the raw columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TREE, LINEAR, KERNEL = "tree", "linear", "kernel"
TRANSFORMED, RAW = "transformed", "raw"
CHUNK_SECONDS = 0.05  # rows are explained in chunks of about this cost, so a stop request is heard soon


class Stopped(Exception):
    """An explanation was stopped between two chunks of rows (its request passed its deadline)."""


def dense(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype="float64")


class Steps:
    """A Pipeline's steps before the final estimator, applied in turn.

    ``pipeline[:-1].transform`` would re-check that the sliced pipeline is fitted, which fails for
    stateless custom steps; the steps themselves are fitted and are all that is needed.
    """

    def __init__(self, steps: list) -> None:
        self.steps = [step for step in steps if step not in (None, "passthrough")]

    def transform(self, X):
        for step in self.steps:
            X = step.transform(X)
        return X


def split_pipeline(model: Any, space: str) -> tuple[Any, Any]:
    """Return (preprocessor or None, final estimator) for the space the explainer works in."""
    if space == TRANSFORMED and hasattr(model, "steps") and len(model.steps) > 1:
        return Steps([step for _, step in model.steps[:-1]]), model.steps[-1][1]
    return None, model


class RawCoder:
    """Turns a raw frame into a float matrix (categories as integer codes) and back, for Kernel SHAP."""

    def __init__(self, schema: dict, background) -> None:
        self.columns = schema["columns"]
        self.vocab: dict[str, list] = {}
        for column in self.columns:
            if column["kind"] in ("category", "string"):
                seen = list(column.get("categories") or [])
                for value in background[column["name"]].tolist():
                    if value not in seen:
                        seen.append(value)
                self.vocab[column["name"]] = seen

    def encode(self, frame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype="float64")
        for j, column in enumerate(self.columns):
            values = frame[column["name"]]
            if column["name"] in self.vocab:
                vocab = self.vocab[column["name"]]
                for value in values.tolist():
                    if value not in vocab and value is not None:
                        vocab.append(value)
                index = {v: i for i, v in enumerate(vocab)}
                out[:, j] = [np.nan if v is None or v != v else index[v] for v in values.tolist()]
            else:
                out[:, j] = np.asarray(values, dtype="float64")
        return out

    def decode(self, matrix: np.ndarray):
        import pandas as pd

        from .schema import _series

        data = {}
        for j, column in enumerate(self.columns):
            col = matrix[:, j]
            if column["name"] in self.vocab:
                vocab = self.vocab[column["name"]]
                values = [None if np.isnan(v) else vocab[int(round(v))] for v in col]
            elif column["kind"] == "integer" and not np.isnan(col).any():
                values = [int(round(v)) for v in col]
            elif column["kind"] == "boolean" and not np.isnan(col).any():
                values = [bool(round(v)) for v in col]
            else:
                values = [None if np.isnan(v) else float(v) for v in col]
            data[column["name"]] = _series(column, values)
        return pd.DataFrame(data, columns=[c["name"] for c in self.columns])


class Explainer:
    """Per-prediction SHAP values on the original columns, rebuilt from the manifest's description."""

    def __init__(self, model: Any, config: dict, schema: dict, background, task: str, classes: list | None,
                 to_input=None):
        import shap

        self.model, self.config, self.task = model, config, task
        self.to_input = to_input or (lambda frame: frame)
        self.kind, self.space, self.output = config["kind"], config["space"], config["output"]
        self.schema = schema
        self.feature_names = [c["name"] for c in schema["columns"]]
        self.classes = classes
        self.pre, self.final = split_pipeline(model, self.space)
        self.groups = np.asarray(config["groups"]) if config.get("groups") is not None else None
        self.coder = RawCoder(schema, background) if self.space == RAW else None
        # Models that split on categories natively get the DataFrame, categories and all: TreeExplainer
        # hands it to LightGBM's and XGBoost's own contributions (pred_contrib / pred_contribs), and
        # HistTreeShap encodes it as HistGradientBoosting's own encoder does
        self.frame_input = config.get("input") == "frame"
        data = self._matrix(background)
        if self.kind == TREE and config.get("engine") == "numpy":
            from .treeshap import HistTreeShap

            self._shap = HistTreeShap(self.final)
        elif self.kind == TREE:
            self._shap = shap.TreeExplainer(self.final)
        elif self.kind == LINEAR:
            self._shap = shap.LinearExplainer(self.final, data)
        else:
            summary = shap.kmeans(data, min(config.get("k", 10), len(data))) if self.space == TRANSFORMED else data
            self._shap = shap.KernelExplainer(self._kernel_function(), summary)

    def _matrix(self, frame) -> np.ndarray:
        if self.frame_input:
            return self.to_input(frame)
        if self.coder is not None:
            return self.coder.encode(frame)
        return dense(self.pre.transform(self.to_input(frame))) if self.pre is not None else dense(self.to_input(frame))

    def _kernel_function(self):
        model = self.model if self.space == RAW else self.final
        decode = (lambda z: self.to_input(self.coder.decode(z))) if self.coder is not None else (lambda z: z)
        if self.task == "regression":
            return lambda z: np.asarray(model.predict(decode(z)), dtype="float64")
        return lambda z: np.asarray(model.predict_proba(decode(z)), dtype="float64")

    def _class_index(self, frame, n: int) -> np.ndarray | None:
        if self.task == "regression":
            return None
        if self.task == "binary":
            return np.ones(n, dtype=int)
        predicted = np.asarray(self.model.predict(self.to_input(frame)))
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup[p] for p in predicted.tolist()])

    @property
    def takes_columns(self) -> bool:
        """True when request columns can go to SHAP as a float matrix, with no DataFrame in between:
        no preprocessing, only numeric columns, and no per-row class to look up."""
        return (self.pre is None and self.coder is None and self.task != "multiclass" and not self.frame_input
                and all(c["kind"] in ("integer", "number", "boolean") for c in self.schema["columns"]))

    def explain_columns(self, columns: dict[str, list], stop=None) -> dict:
        matrix = np.column_stack([
            np.array([np.nan if v is None else v for v in columns[name]], dtype="float64") for name in self.feature_names
        ])
        return self._explain(matrix, None, stop)

    def explain(self, frame, stop=None) -> dict:
        return self._explain(self._matrix(frame), frame, stop)

    @property
    def chunk_rows(self) -> int:
        """Rows per SHAP call: about CHUNK_SECONDS of work by the cost measured at packaging."""
        per_row = self.config.get("seconds_per_row") or (0.03 if self.kind == KERNEL else 0.0005)
        return max(1, int(CHUNK_SECONDS / per_row))

    def _shap_values(self, matrix: np.ndarray, stop) -> np.ndarray:
        # shap_values() skips building an Explanation object: the cheapest call SHAP offers
        options = {KERNEL: {"silent": True}, TREE: {"check_additivity": False}, LINEAR: {}}[self.kind]
        parts, step = [], self.chunk_rows
        for start in range(0, len(matrix), step):
            if stop is not None and stop():
                raise Stopped(f"stopped after {start} of {len(matrix)} rows")
            raw = self._shap.shap_values(matrix[start:start + step], **options)
            if isinstance(raw, list):  # older SHAP: one array per class
                raw = np.stack(raw, axis=-1)
            parts.append(np.asarray(raw, dtype="float64"))
        return np.concatenate(parts, axis=0)

    def _explain(self, matrix: np.ndarray, frame, stop=None) -> dict:
        n = len(matrix)
        values = self._shap_values(matrix, stop)
        base = np.asarray(self._shap.expected_value, dtype="float64").reshape(values.shape[2:])
        base = np.broadcast_to(base, (n,) + base.shape)
        picked = self._class_index(frame, n)
        if values.ndim == 3:  # one slice per class: keep the explained class of each row
            values = values[np.arange(n), :, picked]
            base = base[np.arange(n), picked]
        base = base.reshape(n)
        if self.groups is not None:
            grouped = np.zeros((n, len(self.feature_names)))
            np.add.at(grouped.T, self.groups, values.T)
            values = grouped
        result = {
            "feature_names": self.feature_names,
            "values": values.tolist(),
            "base_values": base.tolist(),
            "outputs": (base + values.sum(axis=1)).tolist(),
            "output": self.output,
            "explainer": self.kind,
        }
        if picked is not None:
            result["classes"] = [self.classes[i] for i in picked.tolist()]
        return result
