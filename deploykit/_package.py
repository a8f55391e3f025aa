"""``deploykit.package``: capture, check and package a fitted model as a BentoML bento."""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import _capture, _parity, _paths
from ._progress import Progress
from ._runtime import artifacts
from ._runtime.model import MANIFEST
from ._runtime.schema import InstanceValidator
from ._limits import package_limits
from ._ranges import probe_ranges
from ._schema import as_frame, infer_schema, none_fit, records, string_kinds, valid_indices
from ._version import __version__
from .exceptions import SchemaError

PARITY_ROWS = 200
BACKGROUND_ROWS = 100
SAMPLE_ROWS = 5
RUNTIME_DIR = Path(__file__).parent / "_runtime"


@dataclass
class Package:
    """A packaged model on disk: artifacts, manifest, and the BentoML bento built from them.

    Made by :func:`deploykit.package`; reopen one with :meth:`Package.load`.
    """

    path: Path
    manifest: dict
    model: Any = field(default=None, repr=False)
    timings: dict = field(default_factory=dict, repr=False)

    # -- facts ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def schema(self) -> dict:
        return self.manifest["schema"]

    @property
    def requirements(self) -> list[str]:
        return list(self.manifest["requirements"])

    @property
    def parity(self) -> dict:
        return self.manifest["parity"]

    @property
    def bento_tag(self) -> str:
        return self.manifest["bento"]["tag"]

    @property
    def explainer(self) -> str | None:
        config = self.manifest.get("explainer")
        return config["algorithm"] if config else None

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def card(self):
        """The package's :class:`~deploykit.ModelCard` (its sha256 checked), or None if it was made without one."""
        from ._card._attach import read_card

        return read_card(self.model_dir, self.manifest)

    def sample_rows(self) -> list[dict]:
        record = self.manifest["artifacts"]["sample"]
        return json.loads(artifacts.read_verified(self.model_dir / record["file"], record["sha256"]))

    @classmethod
    def load(cls, path_or_name: str | Path, version: str | None = None) -> Package:
        """Open a package from its folder, or by name (the newest version unless ``version`` is given)."""
        path = Path(path_or_name)
        if not (path / "model" / MANIFEST).exists():
            name = _paths.check_name(str(path_or_name))
            versions = sorted((int(p.name) for p in _paths.packages_dir(name).iterdir() if p.name.isdigit()))
            if not versions:
                from .exceptions import ConfigError

                raise ConfigError(f"no package named {name!r} in {_paths.packages_dir()}; make one with deploykit.package(...)")
            path = _paths.packages_dir(name) / (version or str(versions[-1]))
        manifest = json.loads((path / "model" / MANIFEST).read_text())
        return cls(path=path, manifest=manifest)

    def parity_summary(self) -> str:
        p = self.parity
        text = f"parity {'ok' if p['ok'] else 'FAILED'} on {p['rows']} rows"
        if p.get("max_probability_diff"):
            text += f" (probabilities within {p['max_probability_diff']:.1e})"
        return text

    def build_image(self, *, base_image: str | None = None, tag: str | None = None, verbose: bool = True):
        """Build this package's Docker image with the Docker engine; return a :class:`deploykit.Image`.

        The build is hermetic (no network inside it): wheels are downloaded on this machine into a
        cached wheelhouse first. The dependency layer is shared by every model with the same pinned
        requirements, so a new model version rebuilds only its own layer.

        Parameters
        ----------
        base_image : str, optional
            Defaults to ``$DEPLOYKIT_BASE_IMAGE``, then ``base_image`` in ``deploykit.toml`` (or
            ``[tool.deploykit]`` in ``pyproject.toml``), then ``python:<major>.<minor>-slim``. It must have
            this notebook's Python minor version; ``deploykit base-image`` builds one without a registry.
        tag : str, optional
            Defaults to ``deploykit/<name>:<version>``.
        """
        from ._docker.build import build_image

        return build_image(self, base_image=base_image, tag=tag, verbose=verbose)

    def deploy(self, *, target: str = "local", name: str | None = None, port: int | None = None, **options):
        """Deploy this package; see :func:`deploykit.deploy`."""
        from ._deploy import deploy

        return deploy(self, target=target, name=name, port=port, **options)

    def __repr__(self) -> str:
        return (
            f"<Package {self.name} v{self.version} · {self.manifest['estimator'].rsplit('.', 1)[-1]} · "
            f"{self.manifest['task']} · parity {'ok' if self.parity['ok'] else 'FAILED'} · bento {self.bento_tag}>"
        )

    def _repr_html_(self) -> str:
        from ._display import package_html

        return package_html(self)


# -- package() -----------------------------------------------------------------------------------------
def package(
    model: Any,
    *,
    name: str,
    X_train: Any,
    y_train: Any = None,
    X_test: Any = None,
    y_test: Any = None,
    explain: bool = True,
    fast_path: bool = True,
    max_batch: int = 1000,
    schema: dict | None = None,
    limits: dict | None = None,
    sensitive_features: Any = None,
    card: dict | None = None,
    profile: str | None = None,
    verbose: bool = True,
    progress: Callable[[dict], None] | None = None,
) -> Package:
    """Capture a fitted model, check it reloads identically, and build its BentoML bento.

    Parameters
    ----------
    model : fitted estimator
        A scikit-learn estimator or Pipeline (custom steps defined in the notebook are fine), or an
        XGBoost/LightGBM model through its scikit-learn API.
    name : str
        Lowercase name of the service, e.g. ``"churn"``. Each call makes a new version of it.
    X_train : DataFrame or 2-D array
        The data the model was fitted on; the input schema is inferred from it.
    y_train, X_test, y_test : optional
        Labels, and held-out data used for the parity check and metrics.
    explain : bool
        Serve SHAP explanations at ``/explain``.
    fast_path : bool
        Try the compiled fast path (ONNX Runtime): it serves only if it gives the same label on every
        test row and probabilities within 1e-5; ``Package.manifest["serving"]["fast_path"]`` says
        whether it was chosen and why.
    max_batch : int
        Largest number of rows one request may carry.
    schema : dict, optional
        For columns of strings, ``"text"`` (free text: any string is served) or ``"category"`` (only
        the values seen in training), e.g. ``{"review": "text", "plan": "category"}``. Columns not named
        are inferred: from what the pipeline does with them (a text vectorizer, an encoder), then from
        their values.
    limits : dict, optional
        What one request may be and cost: ``max_body_bytes`` (default 8 MiB), ``max_depth`` (JSON
        nesting, 16), ``max_string`` (characters of a string value, 10,000), ``explain_seconds`` (an
        ``/explain`` request's estimated cost, 10), ``explain_deadline_seconds`` (30; then 503) and
        ``explain_concurrency`` (explanations at once per worker, 1). See ``docs/serving.md``.
    verbose : bool
        Print each stage as it ends.
    progress : callable, optional
        Receives stage and log events (see :mod:`deploykit._progress`); raising KeyboardInterrupt
        from it cancels cleanly.
    sensitive_features : list of str, Series or DataFrame, optional
        Attributes to measure the model's fairness across, on the held-out rows: column names of
        ``X_test`` (which may be columns the model does not use), or values aligned with ``X_test``.
    card : dict, optional
        The model card's fields only you can fill: ``intended_use``, ``users``, ``out_of_scope``,
        ``owners``, ``license``, ``limitations``, ``risks``, ... (see ``docs/model-card.md``).
    profile : {"internal", "eu-ai-act-high-risk", "us-bank-mrm", "hipaa"}, optional
        Refuse to package (:class:`~deploykit.CardValidationError`) while the card has errors under it.

    Returns
    -------
    Package

    Examples
    --------
    >>> pkg = deploykit.package(clf, name="churn", X_train=X_train, y_train=y_train,
    ...                         X_test=X_test, y_test=y_test)          # doctest: +SKIP
    >>> pkg.parity["ok"]                                               # doctest: +SKIP
    True
    """
    name = _paths.check_name(name)
    overrides, limit_values = schema, package_limits(limits, max_batch)
    progress = Progress(f"package {name}", enabled=verbose, listener=progress)
    with progress.stage("capture", type(model).__name__):
        frame = as_frame(X_train, what="X_train")
        facts = _capture.inspect_model(model, frame, from_array=not isinstance(X_train, pd.DataFrame))
        frame = frame[facts.columns]
        schema = infer_schema(frame, max_batch=max_batch, hints=string_kinds(model, frame, overrides))
        for column in schema["columns"]:
            column["unknown"] = _capture.unknown_category_policies(model, facts.columns).get(column["name"])
        probe_ranges(model, frame, schema, (lambda f: f.to_numpy()) if facts.input_kind == "array" else (lambda f: f),
                     classifier=facts.task != "regression")
        test = _test_frame(X_test, y_test, facts.columns, frame)
        card_plan = _card_plan(card, profile, sensitive_features, X_test, test, y_test)
        fmt = _capture.choose_format(model, facts)
    version = _paths.next_version(name)
    final_dir = _paths.packages_dir(name) / version
    work = _paths.packages_dir(name) / f".building-{version}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        manifest = _write(model, facts, fmt, schema, frame, test, work, name, version, explain, progress, y_test)
        manifest["limits"] = limit_values
        _write_manifest(work, manifest)
        if fast_path:
            with progress.stage("fast path", "ONNX Runtime, checked on every test row"):
                from ._fastpath import plan_fast_path

                manifest["serving"]["fast_path"] = plan_fast_path(
                    model, facts, schema, test if test is not None else frame, work / "model"
                )
                _write_manifest(work, manifest)
        _check_parity(model, facts, schema, frame, test, work, manifest, explain, progress)
        with progress.stage("card", "model card"):
            _make_card(model, manifest, work, frame, y_train, test, y_test, card_plan)
        with progress.stage("bento", "bentoml build"):
            from ._bento import build_bento

            manifest["bento"] = build_bento(work, manifest)
            _write_manifest(work, manifest)
        work.rename(final_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    pkg = Package(path=final_dir, manifest=manifest, model=model, timings=dict(progress.stages))
    progress.note(f"packaged {name} v{version} in {progress.elapsed:.1f} s: {pkg.parity_summary()}")
    return pkg


def _test_frame(X_test, y_test, columns, train):
    if X_test is None:
        return None
    test = as_frame(X_test, what="X_test", columns=columns if not isinstance(X_test, pd.DataFrame) else None)
    missing = [c for c in columns if c not in test.columns]
    if missing:
        raise SchemaError(f"X_test lacks columns the model uses: {missing[:5]}; pass the same columns as X_train", column=missing[0])
    if y_test is not None and len(y_test) != len(test):
        raise SchemaError(f"X_test has {len(test)} rows but y_test has {len(y_test)}; they must align")
    return test[columns]


def _write(model, facts, fmt, schema, frame, test, work, name, version, explain, progress, y_test) -> dict:
    with progress.stage("serialise", fmt):
        shutil.copytree(RUNTIME_DIR, work / "deploykit_runtime", ignore=shutil.ignore_patterns("__pycache__"))
        model_dir = work / "model"
        model_dir.mkdir(parents=True)
        if fmt == artifacts.CLOUDPICKLE:
            _capture.register_by_value(facts)
        model_record = artifacts.dump_model(model, model_dir, fmt)
        background = frame.sample(min(BACKGROUND_ROWS, len(frame)), random_state=0).sort_index()
        source = test if test is not None else frame
        manifest = {
            "format": 1,
            "name": name,
            "version": version,
            "service_name": name.replace("_", "-"),
            "bento_version": f"v{version}",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "deploykit_version": __version__,
            "python": platform.python_version(),
            "task": facts.task,
            "classes": facts.classes,
            "estimator": facts.estimator,
            "input_kind": facts.input_kind,
            "schema": schema,
            "model_libraries": facts.libraries,
            "custom_code": facts.custom_modules,
            "artifacts": {
                "model": model_record,
                "background": _json_artifact(model_dir, "background.json", records(background)),
                "sample": _json_artifact(model_dir, "sample.json", _sample(schema, source)),
            },
            "metrics": _metrics(model, facts, test, y_test),
            "explainer": None,
            "requirements": [],
            "parity": None,
            "serving": {"workers": 1},
        }
    if explain:
        with progress.stage("explainer", "choosing SHAP explainer"):
            from ._explain import plan_explainer

            validator = InstanceValidator(schema)
            bg = validator.frame(records(background))
            to_input = (lambda f: f.to_numpy()) if facts.input_kind == "array" else (lambda f: f)
            manifest["explainer"] = plan_explainer(model, bg, schema, facts.task, facts.classes, to_input)
    _write_manifest(work, manifest)
    return manifest


def _json_artifact(directory: Path, filename: str, payload: Any) -> dict:
    data = json.dumps(payload).encode()
    (directory / filename).write_bytes(data)
    return {"file": filename, "sha256": artifacts.sha256_bytes(data)}


def _write_manifest(work: Path, manifest: dict) -> None:
    (work / "model" / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    (work / "model" / "requirements.txt").write_text("\n".join(manifest["requirements"]) + "\n")
    (work / "model" / "requirements.lock").write_text("\n".join(manifest.get("lock", [])) + "\n")


def _sample(schema: dict, frame: pd.DataFrame) -> list[dict]:
    rows = records(frame.iloc[:50])
    return [rows[i] for i in valid_indices(schema, rows)[:SAMPLE_ROWS]]


def _check_parity(model, facts, schema, frame, test, work, manifest, explain, progress) -> None:
    source = test if test is not None else frame
    with progress.stage("parity", "reloading in a clean process"):
        candidates = source.iloc[: PARITY_ROWS * 2]
        rows = records(candidates)
        keep = valid_indices(schema, rows, manifest["limits"])[:PARITY_ROWS]
        replay = [rows[i] for i in keep]
        if not replay:
            raise none_fit(schema, rows, manifest["limits"], "test data" if test is not None else "training data")
        X = candidates.iloc[keep]
        X_in = X.to_numpy() if facts.input_kind == "array" else X
        expected = model.predict(X_in)
        expected_proba = model.predict_proba(X_in) if facts.task != "regression" else None
        child = _parity.run_child(work, replay, explain_rows=3 if explain else 0)
        result = _parity.compare(expected, expected_proba, child, facts.task)
        _parity.check_fast_path(expected, expected_proba, child, manifest["serving"].get("fast_path"), facts.task)
        result.skipped_rows = min(len(candidates), PARITY_ROWS) - len(keep) if len(keep) < PARITY_ROWS else 0
        manifest["parity"] = result.to_dict()
        manifest["requirements"], manifest["lock"] = _capture.requirements(
            facts, manifest["artifacts"]["model"]["format"], child["modules"], explain=explain,
            extra=("onnxruntime",) if manifest["serving"].get("fast_path", {}).get("enabled") else (),
        )
        _write_manifest(work, manifest)
        _parity.raise_on_mismatch(result)


def _metrics(model, facts, test, y_test) -> dict:
    if test is None or y_test is None:
        return {}
    X = test.to_numpy() if facts.input_kind == "array" else test
    predicted = np.asarray(model.predict(X))
    truth = np.asarray(y_test)
    if facts.task == "regression":
        from sklearn.metrics import mean_absolute_error, r2_score

        return {"r2": float(r2_score(truth, predicted)), "mae": float(mean_absolute_error(truth, predicted)), "rows": len(truth)}
    return {"accuracy": float(np.mean(predicted == truth)), "rows": len(truth)}


def _card_plan(card, profile, sensitive_features, X_test, test, y_test) -> dict:
    """Check the card's arguments before the slow steps; the card itself is made after the parity check."""
    from ._card._attach import plan

    return plan(card, profile, sensitive_features, X_test, test, y_test)


def _make_card(model, manifest, work, frame, y_train, test, y_test, plan) -> None:
    from ._card._attach import attach
    from ._card._build import CardInputs

    attach(CardInputs(model=model, manifest=manifest, model_dir=work / "model", train=frame, y_train=y_train,
                      test=test, y_test=y_test, **plan))
    _write_manifest(work, manifest)
