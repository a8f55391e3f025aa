"""Global explanation for the card: mean |SHAP| per original column, from the explainer the service uses."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Kernel SHAP costs seconds per row; the exact explainers are cheap.
ROWS = {"kernel": 20, "tree": 300, "linear": 300}


def global_importance(model, manifest: dict, background: pd.DataFrame, rows: pd.DataFrame) -> tuple[dict, dict | None]:
    """The explainability section, and the values behind its summary plot (not stored in the card)."""
    config = manifest.get("explainer")
    if config is None:
        return {"available": False, "reason": "the package was made with explain=False, so /explain is off"}, None
    from .._runtime.explain import Explainer

    to_input = (lambda f: f.to_numpy()) if manifest.get("input_kind") == "array" else (lambda f: f)
    explainer = Explainer(model, config, manifest["schema"], background, manifest["task"], manifest["classes"], to_input)
    sample = rows.iloc[: ROWS[config["kind"]]]
    explanation = explainer.explain(sample)
    values = np.asarray(explanation["values"])
    mean_abs = np.abs(values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="mergesort")
    names = explanation["feature_names"]
    section = {
        "available": True,
        "algorithm": config["algorithm"],
        "kind": config["kind"],
        "space": config["space"],
        "output": config["output"],
        "explained_class": _explained(manifest),
        "background_rows": int(len(background)),
        "rows_explained": int(len(sample)),
        "ranking": [{"feature": names[i], "mean_abs_shap": float(mean_abs[i])} for i in order],
        "endpoint": "/explain",
    }
    return section, {"names": names, "values": values, "frame": sample}


def _explained(manifest: dict) -> str:
    if manifest["task"] == "binary":
        return f"class {manifest['classes'][1]!r}"
    if manifest["task"] == "multiclass":
        return "the predicted class of each row"
    return "the predicted value"
