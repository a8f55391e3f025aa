"""Rendering a card's envelope with the Jinja templates in ``templates/card/``."""

from __future__ import annotations

import json

from .._templates import read, render

LABELS = {
    "accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1", "roc_auc": "ROC AUC",
    "log_loss": "Log loss", "mae": "MAE", "rmse": "RMSE", "r2": "R²", "count": "n", "selection_rate": "Selection rate",
    "tpr": "True positive rate", "fpr": "False positive rate", "recall_macro": "Recall (macro)",
    "mean_prediction": "Mean prediction", "demographic_parity_difference": "Demographic parity difference",
    "equalized_odds_difference": "Equalized odds difference",
}


def num(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def pct(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def params(values: dict) -> str:
    return " · ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()) or "(none)"


def observed(feature: dict) -> str:
    if feature["categories"] is not None:
        shown = ", ".join(map(str, feature["categories"][:8]))
        more = len(feature["categories"]) - 8
        return shown + (f" … (+{more})" if more > 0 else "")
    if feature["min"] is not None:
        return f"{num(feature['min'])} … {num(feature['max'])}"
    return "—"


def balance(facts: dict | None) -> str:
    if not facts or not facts.get("label_balance"):
        return "—"
    b = facts["label_balance"]
    if "shares" in b:
        return ", ".join(f"{k}: {b['counts'][k]:,} ({v:.1%})" for k, v in b["shares"].items())
    return f"mean {num(b['mean'])}, sd {num(b['std'])}, range {num(b['min'])} … {num(b['max'])}"


def _helpers() -> dict:
    return {"num": num, "pct": pct, "label": label, "params": params, "observed": observed, "balance": balance,
            "tojson": lambda value: json.dumps(value, indent=2, ensure_ascii=False)}


def _counts(card: dict) -> dict:
    findings = card["validation"]["findings"]
    errors = sum(f["severity"] == "error" for f in findings)
    return {"errors": errors, "warnings": len(findings) - errors}


def _importance(card: dict) -> list[dict]:
    ranking = card["explainability"].get("ranking") or []
    top = max((r["mean_abs_shap"] for r in ranking), default=0) or 1.0
    return [{**r, "width": 100 * r["mean_abs_shap"] / top} for r in ranking]


def html(card: dict) -> str:
    return render("card/card.html.j2", c=card, counts=_counts(card), importance=_importance(card),
                  css=read("card/card.css"), **_helpers())


def markdown(card: dict, images: str | None) -> str:
    front = _front_matter(card)
    return render("card/card.md.j2", c=card, counts=_counts(card), front=front, images=images,
                  cell=lambda v: str(v).replace("|", "\\|").replace("\n", " "), **_helpers())


def summary_html(card: dict) -> str:
    return render("display/card.html.j2", c=card, counts=_counts(card), css=read("display/style.css"), **_helpers())


_HF_LIBRARIES = {"scikit-learn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm"}


def _front_matter(card: dict) -> str:
    """Hugging Face model-card metadata (YAML), with deploykit's own keys under ``deploykit``."""
    import yaml

    md = card["model_details"]
    task = "tabular-regression" if md["task"] == "regression" else "tabular-classification"
    library = next((_HF_LIBRARIES[lib] for lib in md["libraries"] if lib in _HF_LIBRARIES), None)
    meta = {"library_name": library} if library else {}
    license_id = (md["license"] or "").lower()
    meta["license"] = license_id if license_id and license_id != "proprietary" else "other"
    meta["tags"] = ["deploykit", task, *(["fairness"] if card["fairness"].get("available") else [])]
    meta["pipeline_tag"] = task
    evaluation = card["evaluation"]
    if evaluation.get("available"):
        metrics = [{"type": m["name"], "name": label(m["name"]), "value": round(m["value"], 6)}
                   for m in evaluation["metrics"] if m["value"] is not None]
        meta["model-index"] = [{"name": md["name"], "results": [{
            "task": {"type": task},
            "dataset": {"name": f"{md['name']} held-out data", "type": "tabular"},
            "metrics": metrics,
        }]}]
    meta["deploykit"] = {"name": md["name"], "version": md["version"], "model_sha256": md["model_sha256"],
                         "card_format": card["card_format"], "profile": card["validation"]["profile"]}
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
