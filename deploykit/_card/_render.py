"""Rendering a card's envelope with the Jinja templates in ``templates/card/``."""

from __future__ import annotations

import json

from markupsafe import Markup, escape

from .._templates import read, render
from ._compat import for_rendering
from ._verdict import GLOSSARY, verdict

LABELS = {
    "accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1", "roc_auc": "ROC AUC",
    "log_loss": "Log loss", "mae": "MAE", "rmse": "RMSE", "r2": "R²", "count": "n", "selection_rate": "Selection rate",
    "tpr": "True positive rate", "fpr": "False positive rate", "recall_macro": "Recall (macro)",
    "mean_prediction": "Mean prediction", "demographic_parity_difference": "Demographic parity difference",
    "equalized_odds_difference": "Equalized odds difference", "gini": "Gini", "ks": "KS", "brier": "Brier score",
    "mean_score": "Mean score", "observed_rate": "Observed rate", "favourable_rate": "Favourable rate",
    "adverse_impact_ratio": "Adverse impact ratio",
}
# Which glossary entry explains a label.
_TERMS = {"ROC AUC": "ROC AUC", "Gini": "Gini", "KS": "KS", "Recall": "Recall", "Precision": "Precision",
          "Brier score": "Brier score", "Demographic parity difference": "Demographic parity difference",
          "Equalized odds difference": "Equalized odds difference", "Adverse impact ratio": "Adverse impact ratio"}


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


def test_label(name: str) -> str:
    """A drift test's name as the monitoring plan shows it (PSI, KS, χ², null-rate change)."""
    from .._monitor.card import LABELS

    return LABELS.get(name, name)


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def term(name: str) -> Markup:
    """A metric's label, with its glossary definition as a tooltip (and a dotted underline) where there is one."""
    text = label(name)
    meaning = GLOSSARY.get(_TERMS.get(text, ""))
    if meaning is None:
        return Markup(escape(text))
    return Markup(f'<abbr title="{escape(meaning)}">{escape(text)}</abbr>')


def interval(m: dict | None, digits: int = 3) -> str:
    if not m or m.get("ci_low") is None:
        return "—"
    return f"[{num(m['ci_low'], digits)}, {num(m['ci_high'], digits)}]"


def signed(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


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


def _helpers(card: dict) -> dict:
    return {"num": num, "pct": pct, "label": label, "params": params, "observed": observed, "balance": balance,
            "term": term, "interval": interval, "signed": signed, "glossary": glossary(card),
            "test_label": test_label,
            "tojson": lambda value: json.dumps(value, indent=2, ensure_ascii=False)}


def glossary(card: dict) -> dict:
    """The terms the card uses; "held-out data" only when its evaluation rows are held out."""
    evaluation = card["data"].get("evaluation") or {}
    if evaluation.get("held_out", True):
        return GLOSSARY
    return {k: v for k, v in GLOSSARY.items() if k != "held-out data"}


def _counts(card: dict) -> dict:
    findings = card["validation"]["findings"]
    errors = sum(f["severity"] == "error" for f in findings)
    return {"errors": errors, "warnings": len(findings) - errors}


def _importance(card: dict) -> list[dict]:
    ranking = card["explainability"].get("ranking") or []
    top = max((r["mean_abs_shap"] for r in ranking), default=0) or 1.0
    return [{**r, "width": 100 * r["mean_abs_shap"] / top} for r in ranking]


def html(card: dict) -> str:
    card = for_rendering(card)
    return render("card/card.html.j2", c=card, counts=_counts(card), importance=_importance(card),
                  v=verdict(card, label), css=read("card/card.css"), **_helpers(card))


def markdown(card: dict, images: str | None) -> str:
    card = for_rendering(card)
    front = _front_matter(card)
    helpers = {**_helpers(card), "term": label}  # no HTML tooltips in Markdown; the glossary is written out instead
    return render("card/card.md.j2", c=card, counts=_counts(card), front=front, images=images, v=verdict(card, label),
                  cell=lambda v: str(v).replace("|", "\\|").replace("\n", " "), **helpers)


def summary_html(card: dict) -> str:
    card = for_rendering(card)
    return render("display/card.html.j2", c=card, counts=_counts(card), v=verdict(card, label),
                  css=read("display/style.css"), **_helpers(card))


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
            "dataset": {"name": f"{md['name']} {evaluation.get('data', 'held-out data')}", "type": "tabular"},
            "metrics": metrics,
        }]}]
    meta["deploykit"] = {"name": md["name"], "version": md["version"], "model_sha256": md["model_sha256"],
                         "card_format": card["card_format"], "profile": card["validation"]["profile"],
                         "review": verdict(card, label)["review"]["status"]}
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
