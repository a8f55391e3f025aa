"""Assembling a card's JSON envelope from the model, the data, the manifest and the user's fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .._runtime import artifacts
from .._runtime.jsonschema import instance_schema
from .._runtime.schema import InstanceValidator
from .._version import __version__
from . import _data, _outcomes, _plots, _provenance
from ._evaluate import evaluate
from ._hints import changelog_summary, hints
from ._profiles import validate

CARD_FORMAT = 1
ENVELOPE_SCHEMA = "urn:deploykit:model-card:1"
# The only fields that differ when the same inputs make a card twice (the rest is byte-identical).
TIMESTAMPED = ("model_details.created", "changelog.previous_created")


@dataclass
class CardInputs:
    """What ``deploykit.package`` knows when it makes the card."""

    model: Any
    manifest: dict
    model_dir: Path
    train: pd.DataFrame
    y_train: Any
    test: pd.DataFrame | None
    y_test: Any
    sensitive: pd.DataFrame | None = None
    sensitive_notes: list[str] = field(default_factory=list)
    user: dict = field(default_factory=dict)
    profile: str | None = None
    positive: Any = None  # resolved by decision_settings(): the positive class of a binary classifier
    threshold: float | None = None  # the card's decision threshold, None for the model's own predict
    favourable: Any = None
    # Makes the package's monitoring reference from the model's top SHAP features (package() passes it):
    # called once the card's SHAP ranking is known, so the one card render can describe the reference.
    reference: Callable[[list[str]], dict] | None = None

    def model_input(self, frame: pd.DataFrame):
        return frame.to_numpy() if self.manifest.get("input_kind") == "array" else frame


def build(inputs: CardInputs) -> dict:
    """The card's JSON envelope (see ``docs/model-card.schema.json``)."""
    from ._changelog import changelog, previous_package

    m, user = inputs.manifest, inputs.user
    decision_settings(inputs)
    plots: dict[str, dict] = {}
    predicted, proba, own = _predictions(inputs)
    previous = previous_package(m)
    card = {
        "$schema": ENVELOPE_SCHEMA,
        "card_format": CARD_FORMAT,
        "generated_by": f"deploykit {__version__}",
        "review": {"validated_by": user.get("validated_by"), "author": _provenance.author(user), "approvals": []},
        "model_details": _model_details(inputs),
        "intended_use": _intended_use(user),
        "data": _data_section(inputs),
        "io": _io(inputs, predicted, proba, own),
    }
    label = (card["data"]["evaluation"] or {}).get("label", "held-out data")
    card["evaluation"] = _evaluation(inputs, predicted, proba, plots, label, previous)
    card["fairness"] = _fairness(inputs, predicted, proba, plots)
    _calibration_plot(inputs, proba, card["fairness"], plots)
    card["explainability"] = _explainability(inputs, plots, label)
    card["risks"] = {"limitations": user.get("limitations", []), "risks": user.get("risks", []),
                     "tradeoffs": user.get("tradeoffs", [])}
    card["risks"]["hints"] = hints(card, m)
    card["deployment"] = _deployment(m, user, _reference(inputs, card))
    card["plots"] = plots
    card["changelog"] = changelog(card, m, previous)
    card["changelog"]["summary"] = changelog_summary(card["changelog"])
    card["changelog"]["approvals"] = []  # shown from approvals.json when the card is loaded
    profile = inputs.profile or "internal"
    card["validation"] = {"profile": profile, "findings": [f.to_dict() for f in validate(card, profile)]}
    from ._mct import to_mct

    card["model_card_toolkit"] = to_mct(card)
    return clean(card)


def clean(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN and infinities as null, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# -- decision settings -------------------------------------------------------------------------------------
def decision_settings(inputs: CardInputs) -> None:
    """Resolve ``positive_class``, ``decision_threshold`` and ``favourable_class`` against the model's classes."""
    from ..exceptions import ConfigError

    m, user = inputs.manifest, inputs.user
    given = [k for k in ("positive_class", "decision_threshold", "favourable_class") if k in user]
    if m["task"] != "binary":
        if given:
            raise ConfigError(f"card fields {given} apply to binary classifiers; {m['name']} is a {m['task']} model")
        return
    classes = m["classes"]
    inputs.positive = _class_named(user.get("positive_class", classes[1]), classes, "positive_class")
    inputs.favourable = _class_named(user.get("favourable_class", next(c for c in classes if c != inputs.positive)),
                                     classes, "favourable_class")
    inputs.threshold = user.get("decision_threshold")
    if inputs.threshold is not None and not hasattr(inputs.model, "predict_proba"):
        raise ConfigError("card field 'decision_threshold' needs a model with predict_proba")


def _class_named(value, classes: list, key: str):
    from ..exceptions import ConfigError

    for label in classes:
        if label == value or str(label) == str(value):
            return label
    raise ConfigError(f"card field {key!r} is {value!r}, which is not one of the model's classes {classes}")


def _predictions(inputs: CardInputs):
    """Labels at the card's decision settings, probabilities, and the model's own labels."""
    if inputs.test is None:
        return None, None, None
    X = inputs.model_input(inputs.test)
    own = np.asarray(inputs.model.predict(X))
    proba = np.asarray(inputs.model.predict_proba(X), dtype="float64") if inputs.manifest["task"] != "regression" else None
    return apply_threshold(inputs, proba, own), proba, own


def apply_threshold(inputs: CardInputs, proba, own):
    """Flag the positive class where its probability reaches the threshold; the model's own labels without one."""
    if inputs.threshold is None or proba is None:
        return own
    classes = inputs.manifest["classes"]
    other = next(c for c in classes if c != inputs.positive)
    return np.where(proba[:, classes.index(inputs.positive)] >= inputs.threshold, inputs.positive, other)


# -- sections ------------------------------------------------------------------------------------------
def _model_details(inputs: CardInputs) -> dict:
    m, user = inputs.manifest, inputs.user
    steps = _provenance.pipeline_steps(inputs.model)
    top = [s for s in steps if s["step"].count("/") == 0 and s is not steps[0]] or steps
    return {
        "name": m["name"],
        "version": m["version"],
        "created": m["created"],
        "task": m["task"],
        "estimator": m["estimator"],
        "architecture": " → ".join(f"{s['step']}: {s['class'].rsplit('.', 1)[-1]}" for s in top)
        if len(steps) > 1 else steps[0]["class"].rsplit(".", 1)[-1],
        "steps": steps,
        "seeds": _provenance.seeds(inputs.model),
        "artifact": {k: m["artifacts"]["model"][k] for k in ("file", "format", "sha256")},
        "model_sha256": m["artifacts"]["model"]["sha256"],
        "libraries": m["model_libraries"],
        "python": m["python"],
        "deploykit_version": m["deploykit_version"],
        "environment": _provenance.environment(m, inputs.model_dir),
        "custom_code": m.get("custom_code", []),
        "parity": m.get("parity"),
        "git": _provenance.git_commit(),
        "source_file": _provenance.source_file(),
        "overview": user.get("overview"),
        "description": user.get("description"),
        "owners": user.get("owners", []),
        "contact": user.get("contact"),
        "license": user.get("license"),
        "references": user.get("references", []),
    }


def _intended_use(user: dict) -> dict:
    section = {key: user.get(key, []) for key in ("users", "out_of_scope")}
    section["primary_uses"] = user.get("intended_use", [])
    for key in ("decision_role", "human_oversight", "contest"):
        section[key] = user.get(key)
    uses = "; ".join(section["primary_uses"])
    section["summary"] = f"Intended use: {uses}." if uses else "Intended use: not stated."
    return section


def _data_section(inputs: CardInputs) -> dict:
    from ._fairness import MIN_GROUP

    task = inputs.manifest["task"]
    training = {"rows": len(inputs.train), "sha256": _data.dataset_sha256(inputs.train, inputs.y_train),
                "labelled": inputs.y_train is not None, "label_balance": _data.label_balance(inputs.y_train, task)}
    evaluation = None
    if inputs.test is not None:
        evaluation = {"rows": len(inputs.test), "sha256": _data.dataset_sha256(inputs.test, inputs.y_test),
                      "labelled": inputs.y_test is not None, "label_balance": _data.label_balance(inputs.y_test, task),
                      **_data.overlap_facts(inputs.train, inputs.test)}
    sensitive = list(inputs.sensitive.columns) if inputs.sensitive is not None else []
    return {
        "training": training,
        "evaluation": evaluation,
        "target": getattr(inputs.y_train, "name", None) or getattr(inputs.y_test, "name", None) or "target",
        "features": _data.feature_table(inputs.manifest["schema"], inputs.train, inputs.test, sensitive),
        "sensitive_features": sensitive,
        "sensitive_notes": inputs.sensitive_notes,
        "sensitive_summary": _data.sensitive_summary(inputs.sensitive, MIN_GROUP) if inputs.sensitive is not None else [],
        "provenance": inputs.user.get("provenance"),
        "time_range": inputs.user.get("time_range"),
        "deidentification": inputs.user.get("deidentification"),
    }


def _io(inputs: CardInputs, predicted, proba, own) -> dict:
    m = inputs.manifest
    classes = m.get("classes")
    target = getattr(inputs.y_train, "name", None) or "the target"
    output = {
        "predictions": (f"the predicted class of {target}, one of {classes}" if classes
                        else f"the predicted value of {target} (a number)"),
        "probabilities": f"POST /predict_proba: one probability per class, in the order {classes}" if classes else None,
        "explanations": "POST /explain: SHAP values per input column; base value + their sum = the explained output"
        if m.get("explainer") else None,
    }
    return {
        "instance_schema": instance_schema(m["schema"], title=f"{m['name']} instance"),
        "max_batch": m["schema"].get("max_batch"),
        "classes": classes,
        "output": output,
        "decision_threshold": _threshold(inputs, own, proba),
    }


def _threshold(inputs: CardInputs, own, proba) -> dict | None:
    """The decision settings every metric uses, and whether the served /predict applies the same rule."""
    m = inputs.manifest
    if m["task"] != "binary":
        return None
    classes, positive = m["classes"], inputs.positive
    other = next(c for c in classes if c != positive)
    threshold = 0.5 if inputs.threshold is None else inputs.threshold
    rule = f"a row is flagged {positive!r} when P({positive!r}) ≥ {threshold:g}, else {other!r}"
    settings = {"positive_class": positive, "threshold": threshold, "favourable_class": inputs.favourable,
                "source": "card fields" if inputs.threshold is not None or "positive_class" in inputs.user else "defaults",
                "rule": rule, "checked_rows": 0, "agreement": None, "served": None}
    if own is None:
        return settings
    k = classes.index(positive)
    agreement = float(np.mean((own == positive) == (proba[:, k] >= threshold)))
    settings.update(checked_rows=int(len(own)), agreement=agreement)
    if inputs.threshold is None:
        settings["rule"] = (f"the model's own predict (it flags {positive!r} when P({positive!r}) > 0.5"
                            + (")" if agreement == 1.0 else f"; it agrees with a 0.5 cut-off on {agreement:.1%} of the rows)"))
        settings["served"] = "POST /predict returns these labels"
    elif agreement < 1.0:
        settings["served"] = (f"POST /predict returns the model's own labels, which differ from this threshold on "
                              f"{1 - agreement:.1%} of the evaluation rows: apply P({positive!r}) ≥ {threshold:g} to "
                              "POST /predict_proba to act on the decisions this card measures")
    else:
        settings["served"] = "POST /predict returns the same labels on every evaluation row"
    return settings


def _evaluation(inputs: CardInputs, predicted, proba, plots: dict, label: str, previous) -> dict:
    if inputs.test is None or inputs.y_test is None:
        return {"available": False, "reason": "no evaluation labels: pass X_test and y_test to deploykit.package"}
    m = inputs.manifest
    y_true = np.asarray(inputs.y_test)
    result = {"available": True, "data": label,
              **evaluate(y_true, predicted, proba, m["task"], m.get("classes"), positive=inputs.positive)}
    by_name = {metric["name"]: metric for metric in result["metrics"]}
    if m["task"] == "regression":
        result["calibration"] = _outcomes.regression_calibration(y_true, predicted)
        _draw(plots, "residuals", _plots.residuals, y_true, predicted, label)
    else:
        if by_name["roc_auc"]["value"] is not None:
            _draw(plots, "roc", _plots.roc, y_true, proba, m["task"], m["classes"], by_name, label, inputs.positive)
        matrix = result["confusion_matrix"]
        _draw(plots, "confusion_matrix", _plots.confusion, matrix["matrix"], matrix["labels"], label)
        if m["task"] == "binary":
            score = proba[:, m["classes"].index(inputs.positive)]
            result["calibration"] = _outcomes.calibration(y_true, score, inputs.positive)
    decide = lambda p, own: apply_threshold(inputs, p, own)  # noqa: E731
    result["benchmarks"] = _outcomes.benchmarks(inputs, y_true, (predicted, proba), decide, previous=previous)
    return result


def _draw(plots: dict, name: str, draw, *args) -> None:
    """Add a plot, unless matplotlib (the ``card`` extra) is missing: the card then says so instead."""
    if _plots.available():
        plots[name] = draw(*args)


def _fairness(inputs: CardInputs, predicted, proba, plots: dict) -> dict:
    if inputs.sensitive is None:
        return {"available": False, "reason": "no sensitive features declared: pass sensitive_features= to deploykit.package"}
    if inputs.y_test is None:
        return {"available": False, "reason": "group metrics need evaluation labels: pass y_test to deploykit.package"}
    from ._fairness import fairness

    section = fairness(inputs.y_test, predicted, inputs.sensitive, inputs.manifest["task"], inputs.manifest.get("classes"),
                       proba=proba, positive=inputs.positive, favourable=inputs.favourable)
    _draw(plots, "fairness", _plots.fairness, section)
    return section


def _calibration_plot(inputs: CardInputs, proba, fairness: dict, plots: dict) -> None:
    """Overall reliability, and per group of the first sensitive feature when there is one."""
    if proba is None or inputs.y_test is None or inputs.manifest["task"] != "binary":
        return
    score = proba[:, inputs.manifest["classes"].index(inputs.positive)]
    _draw(plots, "calibration", _plots.calibration, np.asarray(inputs.y_test), score, inputs.positive, fairness,
          inputs.sensitive)


def _explainability(inputs: CardInputs, plots: dict, label: str) -> dict:
    from ._importance import global_importance

    m = inputs.manifest
    validator = InstanceValidator(m["schema"])
    record = m["artifacts"]["background"]
    background = validator.frame(json.loads(artifacts.read_verified(inputs.model_dir / record["file"], record["sha256"])))
    source = inputs.test if inputs.test is not None else inputs.train
    from .._schema import records, valid_indices

    rows = records(source.iloc[:400])
    usable = [rows[i] for i in valid_indices(m["schema"], rows)]
    section, values = global_importance(inputs.model, m, background, validator.frame(usable))
    if values is not None:
        section["rows_from"] = label if inputs.test is not None else "training data"
        _draw(plots, "shap_summary", _plots.shap_summary, values["names"], values["values"], values["frame"],
              section["ranking"], section["output"], section["rows_from"])
    return section


def _reference(inputs: CardInputs, card: dict) -> dict | None:
    """The monitoring reference, made now that the card's SHAP ranking names the top features."""
    if inputs.reference is None:
        return None
    from .._monitor.reference import top_shap_features

    return inputs.reference(top_shap_features(card))


def _deployment(m: dict, user: dict, reference: dict | None) -> dict:
    from ._operations import builtin, package_signer

    endpoints = [("POST", "/predict", "predictions")]
    if m["task"] != "regression":
        endpoints.append(("POST", "/predict_proba", "class probabilities"))
    if m.get("explainer"):
        endpoints.append(("POST", "/explain", "SHAP values per prediction"))
    endpoints += [("GET", "/schema", "JSON Schema of one instance"), ("GET", "/card", "this card (HTML)"),
                  ("GET", "/card.json", "this card (JSON)"), ("GET", "/info", "the package manifest"),
                  ("GET", "/livez", "liveness"), ("GET", "/readyz", "readiness"), ("GET", "/metrics", "Prometheus metrics")]
    signer = package_signer()
    return {
        "bento": f"{m['service_name']}:{m['bento_version']}",
        "endpoints": [{"method": a, "path": b, "description": c} for a, b, c in endpoints],
        "image_digest": None,
        "image_note": "a container image built from this package carries this card's sha256 as a label; "
                      "its digest is recorded where the image is built",
        "serving_path": _serving_path(m),
        "integrity": f"the package is signed with Ed25519 key {signer} and verified at deploy, image build, card load and "
                     "service start; every artifact's sha256 is recorded and verified before loading; the model is "
                     f"stored as {m['artifacts']['model']['format']}",
        "monitoring_builtin": "Prometheus metrics at /metrics (requests, latencies and errors per endpoint; drift and "
                              "prediction series once monitored); /livez and /readyz",
        "logging_builtin": "a hash-chained audit trail with signed checkpoints, the capture store, and the service's "
                           "request and error logs (Deployment.logs()); bad requests are answered 4xx with the row and column",
        "monitoring": user.get("monitoring"),
        "logging": user.get("logging"),
        "access_control": user.get("access_control"),
        **builtin(reference, signer),
    }


_ENGINES = {"onnx": "ONNX Runtime", "treelite": "treelite"}


def _serving_path(m: dict) -> str:
    fast = m.get("serving", {}).get("fast_path") or {}
    if fast.get("enabled"):
        engine = fast.get("engine", "onnx")
        return (f"compiled fast path: {_ENGINES.get(engine, engine)} ({fast['precision']} precision), the same label "
                f"as the model on all {fast['rows_checked']} test rows and probabilities within "
                f"{fast['max_difference']:.1e} (limit {fast['tolerance']:.0e}); responses say x-deploykit-path: {engine}")
    reason = fast.get("reason", "not tried")
    return f"the model itself (scikit-learn path; x-deploykit-path: sklearn); compiled fast path not used: {reason}"
