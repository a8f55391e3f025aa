"""Assembling a card's JSON envelope from the model, the data, the manifest and the user's fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._runtime import artifacts
from .._runtime.jsonschema import instance_schema
from .._runtime.schema import InstanceValidator
from .._version import __version__
from . import _data, _plots, _provenance
from ._evaluate import evaluate
from ._profiles import validate

CARD_FORMAT = 1
ENVELOPE_SCHEMA = "urn:deploykit:model-card:1"


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

    def model_input(self, frame: pd.DataFrame):
        return frame.to_numpy() if self.manifest.get("input_kind") == "array" else frame


def build(inputs: CardInputs) -> dict:
    """The card's JSON envelope (see ``docs/model-card.schema.json``)."""
    m, user = inputs.manifest, inputs.user
    plots: dict[str, dict] = {}
    predicted, proba = _predictions(inputs)
    card = {
        "$schema": ENVELOPE_SCHEMA,
        "card_format": CARD_FORMAT,
        "generated_by": f"deploykit {__version__}",
        "model_details": _model_details(inputs),
        "intended_use": _intended_use(user),
        "data": _data_section(inputs),
        "io": _io(inputs, predicted, proba),
        "evaluation": _evaluation(inputs, predicted, proba, plots),
        "fairness": _fairness(inputs, predicted, plots),
        "explainability": _explainability(inputs, plots),
    }
    card["risks"] = {
        "limitations": user.get("limitations", []),
        "risks": user.get("risks", []),
        "tradeoffs": user.get("tradeoffs", []),
        "hints": _hints(card, m),
    }
    card["deployment"] = _deployment(m, user)
    card["review"] = {"validated_by": user.get("validated_by")}
    card["plots"] = plots
    from ._changelog import changelog

    card["changelog"] = changelog(card, m)
    card["changelog"]["summary"] = _changelog_summary(card["changelog"])
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


# -- sections ------------------------------------------------------------------------------------------
def _predictions(inputs: CardInputs):
    if inputs.test is None:
        return None, None
    X = inputs.model_input(inputs.test)
    predicted = np.asarray(inputs.model.predict(X))
    proba = np.asarray(inputs.model.predict_proba(X), dtype="float64") if inputs.manifest["task"] != "regression" else None
    return predicted, proba


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
        "artifact": {k: m["artifacts"]["model"][k] for k in ("file", "format", "sha256")},
        "model_sha256": m["artifacts"]["model"]["sha256"],
        "libraries": m["model_libraries"],
        "python": m["python"],
        "deploykit_version": m["deploykit_version"],
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
    task = inputs.manifest["task"]
    training = {"rows": len(inputs.train), "sha256": _data.dataset_sha256(inputs.train, inputs.y_train),
                "labelled": inputs.y_train is not None, "label_balance": _data.label_balance(inputs.y_train, task)}
    evaluation = None
    if inputs.test is not None:
        evaluation = {"rows": len(inputs.test), "sha256": _data.dataset_sha256(inputs.test, inputs.y_test),
                      "labelled": inputs.y_test is not None, "label_balance": _data.label_balance(inputs.y_test, task),
                      "overlap_with_training": _data.overlap_share(inputs.train, inputs.test)}
    sensitive = list(inputs.sensitive.columns) if inputs.sensitive is not None else []
    return {
        "training": training,
        "evaluation": evaluation,
        "target": getattr(inputs.y_train, "name", None) or getattr(inputs.y_test, "name", None) or "target",
        "features": _data.feature_table(inputs.manifest["schema"], inputs.train, inputs.test, sensitive),
        "sensitive_features": sensitive,
        "sensitive_notes": inputs.sensitive_notes,
        "provenance": inputs.user.get("provenance"),
        "time_range": inputs.user.get("time_range"),
        "deidentification": inputs.user.get("deidentification"),
    }


def _io(inputs: CardInputs, predicted, proba) -> dict:
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
        "decision_threshold": _threshold(m["task"], classes, predicted, proba),
    }


def _threshold(task: str, classes, predicted, proba) -> dict | None:
    if task != "binary":
        return None
    rule = f"predict returns {classes[1]!r} when P({classes[1]!r}) > 0.5, else {classes[0]!r}"
    if predicted is None:
        return {"rule": rule, "checked_rows": 0, "agreement": None}
    agreement = float(np.mean((predicted == classes[1]) == (proba[:, 1] > 0.5)))
    if agreement < 1.0:
        rule = f"predict does not simply threshold P({classes[1]!r}) at 0.5 (agrees on {agreement:.1%} of held-out rows)"
    return {"rule": rule, "checked_rows": int(len(predicted)), "agreement": agreement}


def _evaluation(inputs: CardInputs, predicted, proba, plots: dict) -> dict:
    if inputs.test is None or inputs.y_test is None:
        return {"available": False, "reason": "no held-out labels: pass X_test and y_test to deploykit.package"}
    m = inputs.manifest
    y_true = np.asarray(inputs.y_test)
    result = {"available": True, **evaluate(y_true, predicted, proba, m["task"], m.get("classes"))}
    by_name = {metric["name"]: metric for metric in result["metrics"]}
    if m["task"] == "regression":
        _draw(plots, "residuals", _plots.residuals, y_true, predicted)
    else:
        if by_name["roc_auc"]["value"] is not None:
            _draw(plots, "roc", _plots.roc, y_true, proba, m["task"], m["classes"], by_name)
        matrix = result["confusion_matrix"]
        _draw(plots, "confusion_matrix", _plots.confusion, matrix["matrix"], matrix["labels"])
    return result


def _draw(plots: dict, name: str, draw, *args) -> None:
    """Add a plot, unless matplotlib (the ``card`` extra) is missing: the card then says so instead."""
    if _plots.available():
        plots[name] = draw(*args)


def _fairness(inputs: CardInputs, predicted, plots: dict) -> dict:
    if inputs.sensitive is None:
        return {"available": False, "reason": "no sensitive features declared: pass sensitive_features= to deploykit.package"}
    if inputs.y_test is None:
        return {"available": False, "reason": "group metrics need held-out labels: pass y_test to deploykit.package"}
    from ._fairness import fairness

    section = fairness(inputs.y_test, predicted, inputs.sensitive, inputs.manifest["task"], inputs.manifest.get("classes"))
    _draw(plots, "fairness", _plots.fairness, section)
    return section


def _explainability(inputs: CardInputs, plots: dict) -> dict:
    from ._importance import global_importance

    m = inputs.manifest
    validator = InstanceValidator(m["schema"])
    record = m["artifacts"]["background"]
    background = validator.frame(json.loads(artifacts.read_verified(inputs.model_dir / record["file"], record["sha256"])))
    source = inputs.test if inputs.test is not None else inputs.train
    from .._schema import valid_indices
    from .._schema import records

    rows = records(source.iloc[:400])
    usable = [rows[i] for i in valid_indices(m["schema"], rows)]
    section, values = global_importance(inputs.model, m, background, validator.frame(usable))
    if values is not None:
        section["rows_from"] = "held-out data" if inputs.test is not None else "training data"
        _draw(plots, "shap_summary", _plots.shap_summary, values["names"], values["values"], values["frame"],
              section["ranking"], section["output"])
    return section


def _deployment(m: dict, user: dict) -> dict:
    endpoints = [("POST", "/predict", "predictions")]
    if m["task"] != "regression":
        endpoints.append(("POST", "/predict_proba", "class probabilities"))
    if m.get("explainer"):
        endpoints.append(("POST", "/explain", "SHAP values per prediction"))
    endpoints += [("GET", "/schema", "JSON Schema of one instance"), ("GET", "/card", "this card (HTML)"),
                  ("GET", "/card.json", "this card (JSON)"), ("GET", "/info", "the package manifest"),
                  ("GET", "/livez", "liveness"), ("GET", "/readyz", "readiness"), ("GET", "/metrics", "Prometheus metrics")]
    return {
        "bento": f"{m['service_name']}:{m['bento_version']}",
        "endpoints": [{"method": a, "path": b, "description": c} for a, b, c in endpoints],
        "image_digest": None,
        "image_note": "a container image built from this package carries this card's sha256 as a label; "
                      "its digest is recorded where the image is built",
        "serving_path": _serving_path(m),
        "integrity": f"every artifact's sha256 is recorded and verified before loading; the model is stored as "
                     f"{m['artifacts']['model']['format']}",
        "monitoring_builtin": "Prometheus metrics at /metrics (request counts and latencies per endpoint); /livez and /readyz",
        "logging_builtin": "the service's request and error log (Deployment.logs()); bad requests are answered 4xx with the row and column",
        "monitoring": user.get("monitoring"),
        "logging": user.get("logging"),
        "access_control": user.get("access_control"),
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


def _hints(card: dict, m: dict) -> list[dict]:
    hints = []
    add = lambda kind, message: hints.append({"kind": kind, "message": message})  # noqa: E731
    balance = card["data"]["training"]["label_balance"]
    if balance and "shares" in balance:
        label, share = min(balance["shares"].items(), key=lambda kv: kv[1])
        if share < 0.2:
            add("class_imbalance", f"class {label} is only {share:.1%} of the training rows: accuracy flatters the model; "
                                   "read recall, precision and ROC AUC, and consider the decision threshold")
    for group in card["fairness"].get("flagged", []):
        add("small_group", f"group {group} has fewer than {card['fairness']['small_group_threshold']} held-out rows: "
                           "its metrics are too noisy to rely on")
    for analysis in card["fairness"].get("by_feature", []):
        for name in ("demographic_parity_difference", "equalized_odds_difference"):
            value = analysis["differences"].get(name)
            if value is not None and value > 0.1:
                add("fairness_gap", f"{name.replace('_', ' ')} across {analysis['features'][0]} is {value:.3f} (above 0.1)")
    _range_hints(card["data"]["features"], add)
    evaluation = card["data"]["evaluation"]
    if evaluation and 0 < evaluation["overlap_with_training"] < 1:
        add("overlap", f"{evaluation['overlap_with_training']:.1%} of the evaluation rows also occur in the training data")
    if card["evaluation"].get("available") and card["evaluation"]["rows"] < 200:
        add("small_evaluation", f"only {card['evaluation']['rows']} held-out rows: the confidence intervals are wide")
    if m["artifacts"]["model"]["format"] == artifacts.CLOUDPICKLE:
        add("serialisation", "the model is stored with cloudpickle, which runs code when loaded; deploykit verifies its "
                             "sha256 first, so only load packages whose manifest you trust")
    if not _plots.available():
        add("plots", "the card has no plots because matplotlib is not installed: pip install 'deploykit[card]'")
    if card["explainability"].get("kind") == "kernel":
        add("explanations", "explanations use Kernel SHAP, an approximation over a background sample")
    return hints


def _range_hints(features: list[dict], add) -> None:
    outside = [f for f in features if f.get("outside_range_share")]
    for f in outside:
        add("range", f"{f['outside_range_share']:.1%} of the evaluation rows have {f['name']} outside the training range "
                     f"[{f['min']}, {f['max']}]: the model extrapolates there")
    tails = [f for f in features if f.get("tail_share", 0) > 0.05]
    if tails:
        add("range", "held-out rows often sit near the edge of the observed range (outside the training 1st–99th "
                     "percentiles) for " + ", ".join(f"{f['name']} ({f['tail_share']:.0%})" for f in tails))
    add("range", "the service accepts numbers outside the observed training ranges (x-observed-range in /schema); "
                 "predictions there are extrapolations")
    for f in features:
        if f.get("unseen_categories"):
            add("unseen_category", f"{f['name']} takes values in the evaluation data never seen in training: "
                                   + ", ".join(map(repr, f["unseen_categories"][:5])))


def _changelog_summary(log: dict) -> str:
    if not log.get("available"):
        return log["reason"]
    parts = []
    for metric in log["metrics"]:
        if metric["change"] is not None and abs(metric["change"]) > 1e-12:
            parts.append(f"{metric['name']} {metric['before']:.4g} → {metric['after']:.4g}")
    schema = log["schema"]
    if schema["added"]:
        parts.append("columns added: " + ", ".join(schema["added"]))
    if schema["removed"]:
        parts.append("columns removed: " + ", ".join(schema["removed"]))
    if schema["changed"]:
        parts.append(f"{len(schema['changed'])} column facts changed")
    if log["model"]["estimator"]:
        parts.append(f"estimator {log['model']['estimator']['before']} → {log['model']['estimator']['after']}")
    if log["model"]["hyperparameters"]:
        parts.append(", ".join(f"{h['parameter']} {h['before']} → {h['after']}" for h in log["model"]["hyperparameters"][:4]))
    changes = "; ".join(parts) or "no metric, schema or hyperparameter changes"
    return f"since v{log['previous_version']}: {changes}"
