"""``deploykit.package``: capture, check and package a fitted model as a BentoML bento."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import _capture, _parity, _paths, _store
from ._progress import Progress
from ._runtime import artifacts
from ._runtime.manifest import FILENAME as MANIFEST
from ._runtime.manifest import Manifest
from ._runtime.schema import InstanceValidator
from ._limits import package_limits
from ._ranges import probe_ranges
from ._schema import as_frame, infer_schema, none_fit, records, string_kinds, valid_indices
from ._version import __version__
from .exceptions import ConfigError, SchemaError

PARITY_ROWS = 200
BACKGROUND_ROWS = 100
SAMPLE_ROWS = 5
RUNTIME_DIR = Path(__file__).parent / "_runtime"
BUILD_RECORD = "build.json"  # beside model/: where the bento of this package was built (host side only)
# The image scores files too (`docker run IMAGE batch IN OUT`, deploykit/_runtime/batch.py): it reads and
# writes them with pyarrow, pinned at the version installed here when there is one.
_BATCH_IO = ("pyarrow",) if importlib.util.find_spec("pyarrow") else ()


@dataclass
class Package:
    """A packaged model on disk: artifacts, manifest, and the BentoML bento built from them.

    Made by :func:`deploykit.package`; reopen one with :meth:`Package.load`.
    """

    path: Path
    manifest: Manifest
    model: Any = field(default=None, repr=False)
    timings: dict = field(default_factory=dict, repr=False)
    bento: dict = field(default_factory=dict, repr=False)  # {"tag", "path"} of its BentoML bento

    # -- facts ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def schema(self) -> dict:
        return self.manifest.schema

    @property
    def requirements(self) -> list[str]:
        return list(self.manifest.requirements)

    @property
    def parity(self) -> dict:
        return self.manifest.parity

    @property
    def bento_tag(self) -> str:
        return self.bento["tag"]

    @property
    def bento_path(self) -> Path:
        return Path(self.bento["path"])

    @property
    def explainer(self) -> str | None:
        config = self.manifest.explainer
        return config["algorithm"] if config else None

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def card(self):
        """The package's :class:`~deploykit.ModelCard` (its sha256 checked), or None if it was made without one."""
        from ._card._modelcard import read_card

        return read_card(self.model_dir, self.manifest)

    @property
    def card_page(self) -> str:
        """The ``file://`` address of the card's HTML page in the package."""
        return (self.model_dir / self.manifest.artifacts["card_html"].file).resolve().as_uri()

    def sample_rows(self) -> list[dict]:
        record = self.manifest.artifacts["sample"]
        return json.loads(artifacts.read_verified(self.model_dir / record.file, record.sha256))

    @classmethod
    def load(cls, path_or_name: str | Path, version: str | int | None = None) -> Package:
        """Open a package from its folder, or by name (the newest version unless ``version`` is given)."""
        path = Path(path_or_name)
        if not (path / "model" / MANIFEST).exists():
            path = _resolve(str(path_or_name), version)
        return cls(path=path, manifest=Manifest.read(path / "model"), bento=_read_bento(path))

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

    def export(self, format: str, path: str | Path) -> Path:
        """Write this package in another form; ``"edge"``: its compiled model as a folder and a zip.

        The edge bundle predicts with numpy and the compiled engine only (no deploykit, scikit-learn or
        server): ``predict.py`` has ``predict(rows)`` and ``predict_proba(rows)``, beside the compiled
        model, the input schema, the parity proof and the model card. ``path.zip`` holds the same folder.

        Examples
        --------
        >>> folder = pkg.export("edge", "churn-edge")            # doctest: +SKIP
        >>> import sys; sys.path.insert(0, str(folder)); import predict  # doctest: +SKIP
        >>> predict.predict(pkg.sample_rows())                   # doctest: +SKIP
        [0, 1, 0, 0, 1]
        """
        if format != "edge":
            from .exceptions import ConfigError

            raise ConfigError(f"unknown export format {format!r}; the formats are: 'edge'")
        from ._edge import export_edge

        return export_edge(self, path)

    def __repr__(self) -> str:
        return (
            f"<Package {self.name} v{self.version} · {self.manifest.estimator.rsplit('.', 1)[-1]} · "
            f"{self.manifest.task} · parity {'ok' if self.parity['ok'] else 'FAILED'} · bento {self.bento_tag}>"
        )

    def _repr_html_(self) -> str:
        from ._display import package_html

        return package_html(self)


def _resolve(name: str, version: str | int | None) -> Path:
    """The folder of a saved package given by name, and version (default: the newest)."""
    name = _paths.check_name(name)
    found = _store.versions(name)
    if not found:
        raise ConfigError(f"no package named {name!r} in {_paths.packages_dir()}; make one with deploykit.package(...)")
    if version is None:
        return _store.path(name, found[-1])
    if not str(version).isdigit() or int(version) not in found:
        raise ConfigError(f"package {name!r} has no version {version!r}; versions: {', '.join(map(str, found))}")
    return _store.path(name, version)


def _read_bento(path: Path) -> dict:
    record = path / BUILD_RECORD
    if record.is_file():
        return json.loads(record.read_text())["bento"]
    legacy = json.loads((path / "model" / MANIFEST).read_text())  # format 1 kept it in the manifest
    return legacy.get("bento") or {}


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
    version, work = _store.reserve(name)
    try:
        manifest = _write(model, facts, fmt, schema, frame, test, work, name, version, explain, progress, y_test)
        manifest.limits = limit_values
        if fast_path:
            with progress.stage("fast path", "ONNX Runtime, checked on every test row"):
                from ._fastpath import plan_fast_path

                manifest.serving.fast_path = plan_fast_path(
                    model, facts, schema, test if test is not None else frame, work / "model"
                )
        _check_parity(model, facts, schema, frame, test, work, manifest, explain, progress)
        with progress.stage("card", "model card, with the monitoring reference it describes"):
            _make_card(model, facts, manifest, work, frame, y_train, test, y_test, card_plan)
        _write_manifest(work, manifest)
        with progress.stage("bento", "sign, then bentoml build"):
            from ._bento import build_bento
            from ._security.signing import sign_package

            signer = sign_package(work, manifest)  # before the build, so the bento carries the signature
            bento = build_bento(work, manifest)
            (work / BUILD_RECORD).write_text(json.dumps({"bento": bento}, indent=2))
        final_dir = _store.publish(work, name, version)
    except BaseException:
        _store.discard(work)
        raise
    pkg = Package(path=final_dir, manifest=manifest, model=model, timings=dict(progress.stages), bento=bento)
    from ._security.audit import record_action  # the deploy-action audit trail

    record_action(name, "package", {"version": version, "path": str(final_dir), "signed_by": signer,
                                    "model_sha256": manifest.model.sha256,
                                    "card_sha256": (manifest.card or {}).get("sha256")})
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


def _write(model, facts, fmt, schema, frame, test, work, name, version, explain, progress, y_test) -> Manifest:
    """Write the model's artifacts into ``work``; return the manifest drafted so far (it is written once,
    when every stage has added its part)."""
    with progress.stage("serialise", fmt):
        shutil.copytree(RUNTIME_DIR, work / "deploykit_runtime", ignore=shutil.ignore_patterns("__pycache__"))
        model_dir = work / "model"
        model_dir.mkdir(parents=True)
        if fmt == artifacts.CLOUDPICKLE:
            _capture.register_by_value(facts)
        model_record = artifacts.dump_model(model, model_dir, fmt)
        background = frame.sample(min(BACKGROUND_ROWS, len(frame)), random_state=0).sort_index()
        source = test if test is not None else frame
        manifest = Manifest(
            name=name,
            version=version,
            task=facts.task,
            classes=facts.classes,
            estimator=facts.estimator,
            input_kind=facts.input_kind,
            schema=schema,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            deploykit_version=__version__,
            python=platform.python_version(),
            model_libraries=facts.libraries,
            custom_code=facts.custom_modules,
            artifacts={
                "model": model_record,
                "background": _json_artifact(model_dir, "background.json", records(background)),
                "sample": _json_artifact(model_dir, "sample.json", _sample(schema, source)),
            },
            metrics=_metrics(model, facts, test, y_test),
        )
    if explain:
        with progress.stage("explainer", "choosing SHAP explainer"):
            from ._explain import plan_explainer

            validator = InstanceValidator(schema)
            bg = validator.frame(records(background))
            to_input = (lambda f: f.to_numpy()) if facts.input_kind == "array" else (lambda f: f)
            manifest.explainer = plan_explainer(model, bg, schema, facts.task, facts.classes, to_input)
    return manifest


def _json_artifact(directory: Path, filename: str, payload: Any) -> artifacts.Artifact:
    return artifacts.write_artifact(directory, filename, json.dumps(payload).encode())


def _write_manifest(work: Path, manifest: Manifest) -> None:
    """The one write of the package's manifest, with the requirement files the image build reads."""
    manifest.write(work / "model")
    (work / "model" / "requirements.txt").write_text("\n".join(manifest.requirements) + "\n")
    (work / "model" / "requirements.lock").write_text("\n".join(manifest.lock) + "\n")


def _sample(schema: dict, frame: pd.DataFrame) -> list[dict]:
    rows = records(frame.iloc[:50])
    return [rows[i] for i in valid_indices(schema, rows)[:SAMPLE_ROWS]]


def _check_parity(model, facts, schema, frame, test, work, manifest, explain, progress) -> None:
    source = test if test is not None else frame
    with progress.stage("parity", "reloading in a clean process"):
        candidates = source.iloc[: PARITY_ROWS * 2]
        rows = records(candidates)
        keep = valid_indices(schema, rows, manifest.limits)[:PARITY_ROWS]
        replay = [rows[i] for i in keep]
        if not replay:
            raise none_fit(schema, rows, manifest.limits, "test data" if test is not None else "training data")
        X = candidates.iloc[keep]
        X_in = X.to_numpy() if facts.input_kind == "array" else X
        expected = model.predict(X_in)
        expected_proba = model.predict_proba(X_in) if facts.task != "regression" else None
        child = _parity.run_child(work, manifest, replay, explain_rows=3 if explain else 0)
        result = _parity.compare(expected, expected_proba, child, facts.task)
        _parity.check_fast_path(expected, expected_proba, child, manifest.serving.fast_path, facts.task)
        result.skipped_rows = min(len(candidates), PARITY_ROWS) - len(keep) if len(keep) < PARITY_ROWS else 0
        manifest.parity = result.to_dict()
        manifest.requirements, manifest.lock = _capture.requirements(
            facts, manifest.model.format, child["modules"], explain=explain,
            extra=_fast_path_requires(manifest.serving.fast_path) + _BATCH_IO,
        )
        _parity.raise_on_mismatch(result)


def _fast_path_requires(fast: dict) -> tuple[str, ...]:
    """The compiled engine's runtime package (packages made before engines were recorded used ONNX Runtime)."""
    return tuple(fast.get("requires", ["onnxruntime"])) if fast.get("enabled") else ()


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


def _make_reference(model, facts, manifest, work, frame, test, plan, top_features: list[str]) -> dict:
    """What monitoring compares live traffic with: the training data's distributions, the model's
    predictions on held-out rows, its top SHAP features, and thresholds calibrated for window sizes.

    Called by the card once its SHAP ranking is known, since the card describes the reference."""
    from ._monitor import make_reference
    from ._monitor.report import REFERENCE_ARTIFACT

    source = test if test is not None else frame
    sensitive = list(plan["sensitive"].columns) if plan.get("sensitive") is not None else []
    reference = make_reference(
        manifest.schema, frame, predictions=model.predict(source.to_numpy() if facts.input_kind == "array" else source),
        task=facts.task, classes=facts.classes, top_features=top_features, sensitive_features=sensitive,
        name=manifest.name, version=manifest.version,
        prediction_source="held-out predictions" if test is not None else "predictions on the training rows")
    manifest.artifacts[REFERENCE_ARTIFACT] = _json_artifact(work / "model", "monitor_reference.json", reference)
    return reference


def _card_plan(card, profile, sensitive_features, X_test, test, y_test) -> dict:
    """Check the card's arguments before the slow steps; the card itself is made after the parity check."""
    from ._card._attach import plan

    return plan(card, profile, sensitive_features, X_test, test, y_test)


def _make_card(model, facts, manifest, work, frame, y_train, test, y_test, plan) -> None:
    """The card, which makes the monitoring reference (:func:`_make_reference`) once it knows the top SHAP features."""
    from functools import partial

    from ._card._attach import attach
    from ._card._build import CardInputs

    attach(CardInputs(model=model, manifest=manifest, model_dir=work / "model", train=frame, y_train=y_train,
                      test=test, y_test=y_test, reference=partial(_make_reference, model, facts, manifest, work, frame,
                                                                  test, plan), **plan))
