"""The served model: loads a package directory (verifying every artifact) and answers requests.

Used by the BentoML service, by the parity check in a clean process, and by tests. It depends only on
the serving stack (numpy, pandas, the model's own libraries, skops/cloudpickle, shap when explaining).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from .artifacts import load_model, read_verified
from .errors import InputError
from .manifest import Manifest
from .schema import InstanceValidator


def default_package_dir() -> Path:
    """The package this process serves: ``$DEPLOYKIT_PACKAGE_DIR``, else ``model/`` beside the runtime."""
    configured = os.environ.get("DEPLOYKIT_PACKAGE_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "model"


try:  # orjson parses and writes JSON several times faster than the standard library
    import orjson

    def dumps(payload: Any) -> bytes:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)

    def _loads(body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return json.loads(body)  # NaN and Infinity, which clients built on json.dumps send

except ImportError:  # pragma: no cover - orjson is in the serving requirements

    def dumps(payload: Any) -> bytes:
        return json.dumps(payload).encode()

    _loads = json.loads


def parse_json(body: bytes) -> Any:
    try:
        return _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the request body is not valid JSON: {exc}", status=400) from None


def jsonable(values: Any) -> list:
    import numpy as np

    return np.asarray(values).tolist()


class ModelRuntime:
    """A loaded package: validation, prediction and explanation behind one object."""

    def __init__(self, directory: Path, manifest: Manifest, model: Any = None) -> None:
        self.directory, self.manifest, self._model = directory, manifest, model
        self._model_lock = threading.Lock()
        self.validator = InstanceValidator(manifest.schema)
        self.task = manifest.task
        self.classes = manifest.classes
        self.model_info = manifest.info
        self.to_input = (lambda frame: frame.to_numpy()) if manifest.input_kind == "array" else (lambda frame: frame)
        self._explainer = None
        self._explainer_lock = threading.Lock()
        self.fast = None
        self.path = "sklearn"  # which path answers /predict and /predict_proba: "sklearn" or the engine's name

    def use_fast_path(self) -> None:
        """Serve from the compiled model when the package proved it (``DEPLOYKIT_FAST_PATH=0`` turns it off)."""
        serving = self.manifest.serving
        if not serving.compiled or os.environ.get("DEPLOYKIT_FAST_PATH", "1") == "0":
            return
        from .fastpath import FastPath

        self.fast = FastPath(self.directory, serving.fast_path, self.manifest.schema, self.task, self.classes)
        self.path = self.fast.engine_name

    @property
    def model(self) -> Any:
        """The model object itself. With the compiled path serving, it is loaded (with the libraries it
        needs: skops, scikit-learn, ...) only when something asks for it, such as the first /explain."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    self._model = load_model(self.directory, self.manifest.model)
        return self._model

    @classmethod
    def load(cls, directory: str | Path | None = None, *, manifest: Manifest | None = None) -> ModelRuntime:
        """Load the package in ``directory`` (its ``model/`` folder), described by its manifest unless
        ``manifest`` is given (the parity replay checks a package before its manifest is written)."""
        directory = Path(directory) if directory is not None else default_package_dir()
        runtime = cls(directory, manifest or Manifest.read(directory))
        runtime.use_fast_path()
        if runtime.fast is None:
            runtime.model  # noqa: B018 - the plain path needs it for the first request: load it before ready
        else:  # a changed model file is refused at start all the same; only deserialising waits
            record = runtime.manifest.model
            read_verified(directory / record.file, record.sha256)
        return runtime

    # -- requests -------------------------------------------------------------------------------------
    def columns(self, body: bytes | dict) -> dict[str, list]:
        """Parse and validate a request body into checked column values; raises :class:`InputError`."""
        parsed = parse_json(body) if isinstance(body, (bytes, str)) else body
        return self.validator.columns_of(self.validator.instances(parsed))

    def frame(self, body: bytes | dict):
        """Parse and validate a request body into the model's DataFrame; raises :class:`InputError`."""
        return self.validator.build(self.columns(body))

    def labels(self, columns: dict[str, list]) -> list:
        """Predictions for checked columns, from the fast path when it serves."""
        if self.fast is not None:
            return self.fast.run(columns)[0]
        return jsonable(self.model.predict(self.to_input(self.validator.build(columns))))

    def probabilities(self, columns: dict[str, list]) -> list:
        if self.task == "regression":
            raise InputError("predict_proba is only served for classifiers; this model is a regressor", status=404)
        if self.fast is not None:
            return self.fast.run(columns)[1].tolist()
        return jsonable(self.model.predict_proba(self.to_input(self.validator.build(columns))))

    def predict(self, frame) -> dict:
        return {"predictions": jsonable(self.model.predict(self.to_input(frame))), "model": self.model_info}

    def predict_proba(self, frame) -> dict:
        if self.task == "regression":
            raise InputError("predict_proba is only served for classifiers; this model is a regressor", status=404)
        probabilities = self.model.predict_proba(self.to_input(frame))
        return {"probabilities": jsonable(probabilities), "classes": self.classes, "model": self.model_info}

    def explain_columns(self, columns: dict[str, list]) -> dict:
        """Explanations for checked columns, skipping the DataFrame where the model needs none."""
        explainer = self.explainer()
        if explainer is not None and explainer.takes_columns:
            return {**explainer.explain_columns(columns), "model": self.model_info}
        return self.explain(self.validator.build(columns))

    def explain(self, frame) -> dict:
        explainer = self.explainer()
        if explainer is None:
            raise InputError("explanations are off for this model (packaged with explain=False)", status=404)
        return {**explainer.explain(frame), "model": self.model_info}

    def explainer(self):
        config = self.manifest.explainer
        if config is None:
            return None
        with self._explainer_lock:  # built once, by whichever request needs it first
            if self._explainer is None:
                from .explain import Explainer

                background = self.background()
                self._explainer = Explainer(
                    self.model, config, self.manifest.schema, background, self.task, self.classes, self.to_input
                )
        return self._explainer

    def background(self):
        record = self.manifest.artifacts["background"]
        rows = json.loads(read_verified(self.directory / record.file, record.sha256))
        return self.validator.frame(rows)

    def json_schema(self) -> dict:
        from .jsonschema import instance_schema

        return instance_schema(self.manifest.schema, title=f"{self.manifest.name} instance")

    # -- the model card (made on the notebook side; served as written, after its sha256 check) -----------
    def card_html(self) -> bytes:
        return self._card_file("card_html")

    def card_json(self) -> bytes:
        return self._card_file("card_json")

    def _card_file(self, key: str) -> bytes:
        record = self.manifest.artifacts.get(key)
        if record is None:
            raise InputError(
                f"{self.model_info['name']} v{self.model_info['version']} has no model card: it was packaged before "
                "deploykit made cards; package the model again to serve one", status=404)
        return read_verified(self.directory / record.file, record.sha256)
