"""The served model: loads a package directory (verifying every artifact) and answers requests.

Used by the BentoML service, by the parity check in a clean process, and by tests. It depends only on
the serving stack (numpy, pandas, the model's own libraries, skops/cloudpickle, shap when explaining).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from .artifacts import load_model, read_verified
from .errors import InputError, clip
from .limits import Limits
from .manifest import Manifest
from .refusal import checked
from .schema import InstanceValidator, too_deep

logger = logging.getLogger("deploykit.service")


def default_package_dir() -> Path:
    """The package this process serves: ``$DEPLOYKIT_PACKAGE_DIR``, else ``model/`` beside the runtime."""
    configured = os.environ.get("DEPLOYKIT_PACKAGE_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "model"


try:  # orjson parses and writes JSON several times faster than the standard library
    import orjson

    def dumps(payload: Any) -> bytes:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)

    _fast_loads, _FastError = orjson.loads, orjson.JSONDecodeError

except ImportError:  # pragma: no cover - orjson is in the serving requirements

    def dumps(payload: Any) -> bytes:
        return json.dumps(payload).encode()

    _fast_loads, _FastError = json.loads, ValueError


def _not_json(why: str) -> InputError:
    return InputError(f"the request body is not valid JSON: {clip(why, 160)}", status=400)


def parse_json(body: bytes | str, limits: Limits = Limits()) -> Any:
    """The parsed body, or a 400 :class:`InputError`: never another exception, whatever the bytes.

    Bodies are UTF-8 (RFC 8259); NaN and Infinity, which ``json.dumps`` writes, are read too.
    """
    if len(body) > limits.max_body_bytes:
        raise body_too_large(len(body), limits)
    try:
        return _fast_loads(body)
    except _FastError as exc:
        if "depth" in str(exc) or "recursion" in str(exc):
            raise too_deep(limits) from None
        first = str(exc)
    try:  # orjson refuses NaN and Infinity; the standard parser reads them, from strict UTF-8 only
        value = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except UnicodeDecodeError as exc:
        raise _not_json(f"it is not UTF-8 text ({exc.reason} at byte {exc.start}); send UTF-8") from None
    except RecursionError:
        raise too_deep(limits) from None
    except ValueError:
        raise _not_json(first) from None
    try:
        dumps(value)  # what the standard parser lets through and orjson would not: lone surrogates
    except (TypeError, ValueError) as exc:
        if "surrogate" in str(exc):
            raise _not_json(str(exc)) from None
    return value  # integers past 64 bits are valid JSON: the validator says where they do not fit


def body_too_large(size: int | None, limits: Limits) -> InputError:
    got = f"of {size:,} bytes " if size is not None else ""
    return InputError(
        f"the request body {got}is over the limit of {limits.max_body_bytes:,} bytes; send fewer rows per "
        f"request, or {limits.raise_with('max_body_bytes', max(size or 0, 2 * limits.max_body_bytes))}", status=413)


def jsonable(values: Any) -> list:
    import numpy as np

    return np.asarray(values).tolist()


def explanations_off() -> InputError:
    return InputError("explanations are off for this model (packaged with explain=False)", status=404)


class ModelRuntime:
    """A loaded package: validation, prediction and explanation behind one object."""

    def __init__(self, directory: Path, manifest: Manifest, model: Any = None) -> None:
        self.directory, self.manifest, self._model = directory, manifest, model
        self._model_lock = threading.Lock()
        self.limits = Limits.from_manifest(manifest)
        self.validator = InstanceValidator(manifest.schema, self.limits)
        self.task = manifest.task
        self.classes = manifest.classes
        self.model_info = manifest.info
        self.to_input = (lambda frame: frame.to_numpy()) if manifest.input_kind == "array" else (lambda frame: frame)
        self._explainer = None
        self._explainer_lock = threading.Lock()
        self._sample: dict | None = None
        # the same calls, answering 422 for a row the model cannot take when the request is at fault
        self.checked_labels = checked(self.labels, self.sample_columns)
        self.checked_probabilities = checked(self.probabilities, self.sample_columns)
        self.checked_explain = checked(self.explain_columns, self.sample_columns)
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

    def loaded(self) -> ModelRuntime:
        """This runtime with its model object loaded now rather than on first use: batch scoring needs it
        for every chunk, and a worker that loads it up front spares the first chunk the libraries' import
        (seconds, measured on Dask workers)."""
        self.model  # noqa: B018 - the property loads it
        return self

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
        parsed = parse_json(body, self.limits) if isinstance(body, (bytes, str)) else body
        return self.validator.columns_of(self.validator.instances(parsed))

    def frame(self, body: bytes | dict):
        """Parse and validate a request body into the model's DataFrame; raises :class:`InputError`."""
        return self.validator.build(self.columns(body))

    def labels(self, columns: dict[str, list]) -> list:
        """Predictions for checked columns, from the fast path when it serves."""
        if self.fast is not None and (answer := self._fast(columns)) is not None:
            return answer[0]
        return jsonable(self.model.predict(self.to_input(self.validator.build(columns))))

    def probabilities(self, columns: dict[str, list]) -> list:
        if self.task == "regression":
            raise InputError("predict_proba is only served for classifiers; this model is a regressor", status=404)
        if self.fast is not None and (answer := self._fast(columns)) is not None:
            return answer[1].tolist()
        return jsonable(self.model.predict_proba(self.to_input(self.validator.build(columns))))

    def _fast(self, columns: dict[str, list]):
        """The fast path's answer, or None when ONNX Runtime fails on input the schema accepted (the
        model itself answers then: the request is not at fault)."""
        try:
            return self.fast.run(columns)
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - logged; the plain path answers
            logger.warning("the compiled fast path failed on valid input; the model answers instead", exc_info=True)
            return None

    def predict(self, frame) -> dict:
        return {"predictions": jsonable(self.model.predict(self.to_input(frame))), "model": self.model_info}

    def predict_proba(self, frame) -> dict:
        if self.task == "regression":
            raise InputError("predict_proba is only served for classifiers; this model is a regressor", status=404)
        probabilities = self.model.predict_proba(self.to_input(frame))
        return {"probabilities": jsonable(probabilities), "classes": self.classes, "model": self.model_info}

    def explain_columns(self, columns: dict[str, list], stop=None) -> dict:
        """Explanations for checked columns, skipping the DataFrame where the model needs none.

        ``stop`` is polled between chunks of rows; when it returns True, :class:`~.explain.Stopped` is raised.
        """
        explainer = self.explainer()
        if explainer is not None and explainer.takes_columns:
            return {**explainer.explain_columns(columns, stop), "model": self.model_info}
        return self.explain(self.validator.build(columns), stop)

    def explain(self, frame, stop=None) -> dict:
        explainer = self.explainer()
        if explainer is None:
            raise explanations_off()
        return {**explainer.explain(frame, stop), "model": self.model_info}

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

    def sample_columns(self) -> dict[str, list]:
        """The package's sample rows (which the model answered when it was packaged), as checked columns."""
        if self._sample is None:
            record = self.manifest.artifacts.get("sample")
            rows = json.loads(read_verified(self.directory / record.file, record.sha256)) if record else []
            self._sample = self.validator.columns_of(rows) if rows else {}
        return self._sample

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
