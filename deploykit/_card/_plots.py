"""The card's plots, drawn with matplotlib's object API on the Agg canvas and kept as base64 PNG.

``Figure`` plus ``FigureCanvasAgg`` needs no pyplot, so a notebook's own backend and open figures are
left alone. PNGs carry no timestamp, so the same card draws the same bytes.
"""

from __future__ import annotations

import base64
import io

import numpy as np

BLUE, RED, GREY = "#2e86ab", "#d1495b", "#8a8f98"
PALETTE = ["#2e86ab", "#d1495b", "#edae49", "#66a182", "#8d6a9f", "#00798c", "#f4a259", "#5b5f97"]
DPI = 110


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float = 5.6, height: float = 3.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.25, linewidth=0.6)
    ax.tick_params(labelsize=8)


def roc(y_true, proba, task: str, classes: list, metrics: dict, data: str, positive=None) -> dict:
    from sklearn.metrics import roc_curve

    figure = _figure(4.6, 3.8)
    ax = figure.add_subplot()
    if task == "binary":
        positive = classes[1] if positive is None else positive
        fpr, tpr, _ = roc_curve(np.asarray(y_true) == positive, proba[:, classes.index(positive)])
        auc = metrics["roc_auc"]
        ax.plot(fpr, tpr, color=BLUE, linewidth=2,
                label=f"class {positive}: AUC {auc['value']:.3f} (95% CI {auc['ci_low']:.3f}–{auc['ci_high']:.3f})")
    else:
        for k, label in enumerate(classes):
            fpr, tpr, _ = roc_curve(np.asarray(y_true) == label, proba[:, k])
            ax.plot(fpr, tpr, color=PALETTE[k % len(PALETTE)], linewidth=1.8, label=f"{label} vs rest")
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(_wrap(f"ROC curve on {data}"), fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right", frameon=False)
    _style(ax)
    return {"title": f"ROC curve on {data}", "section": "evaluation", "png": _png(figure)}


def _wrap(text: str, width: int = 52) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def confusion(matrix: list[list[int]], labels: list[str], data: str) -> dict:
    counts = np.asarray(matrix)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 3.0 + 0.4 * len(labels)
    figure = _figure(size + 0.7, size)
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, f"{value}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="actual")
    ax.set_title("Confusion matrix (count, share of actual)", fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    return {"title": f"Confusion matrix on {data}", "section": "evaluation", "png": _png(figure)}


def residuals(y_true, predicted, data: str) -> dict:
    y_true, predicted = np.asarray(y_true, dtype="float64"), np.asarray(predicted, dtype="float64")
    figure = _figure(8.4, 3.6)
    left, right = figure.subplots(1, 2)
    low, high = min(y_true.min(), predicted.min()), max(y_true.max(), predicted.max())
    left.scatter(y_true, predicted, s=10, alpha=0.6, color=BLUE, edgecolors="none")
    left.plot([low, high], [low, high], color=GREY, linestyle="--", linewidth=1)
    left.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    right.scatter(predicted, y_true - predicted, s=10, alpha=0.6, color=RED, edgecolors="none")
    right.axhline(0, color=GREY, linestyle="--", linewidth=1)
    right.set(xlabel="predicted", ylabel="residual (actual − predicted)", title="Residuals")
    for ax in (left, right):
        ax.title.set_fontsize(10)
        _style(ax)
    return {"title": f"Residuals on {data}", "section": "evaluation", "png": _png(figure)}


def shap_summary(names: list[str], values: np.ndarray, frame, ranking: list[dict], output: str, data: str,
                 top: int = 12) -> dict:
    """A beeswarm: one dot per explained row and column, coloured by the column's value (grey: categories)."""
    shown = [r["feature"] for r in ranking[:top]][::-1]
    figure = _figure(6.4, 0.42 * len(shown) + 1.4)
    ax = figure.add_subplot()
    rng = np.random.default_rng(0)
    from matplotlib import colormaps

    cmap = colormaps["coolwarm"]
    for y, name in enumerate(shown):
        column = values[:, names.index(name)]
        jitter = rng.uniform(-0.28, 0.28, len(column))
        raw = frame[name]
        numeric = raw.dtype.kind in "biuf"
        if numeric and raw.notna().any():
            x = raw.astype("float64").rank(pct=True).fillna(0.5).to_numpy()
            colours = cmap(x)
        else:
            colours = GREY
        ax.scatter(column, y + jitter, s=9, c=colours, alpha=0.8, edgecolors="none")
    ax.axvline(0, color=GREY, linewidth=0.8)
    ax.set_yticks(range(len(shown)), shown, fontsize=8)
    ax.set_xlabel(f"SHAP value (contribution to the {output})", fontsize=8)
    ax.set_title(_wrap(f"SHAP summary: each dot is one row of the {data} (red = high value, blue = low)", 70), fontsize=9)
    _style(ax)
    return {"title": f"SHAP summary on {data}", "section": "explainability", "png": _png(figure)}


def fairness(section: dict) -> dict:
    """Per group (each feature and their intersection): the headline rates with 95% intervals; ⚑ = too few rows."""
    from ._render import label

    wanted = {"selection_rate", "tpr", "fpr", "accuracy", "recall_macro", "mae"}
    metrics = [m for m in section["metrics"] if m in wanted and not (m == "accuracy" and "tpr" in section["metrics"])]
    analyses = section["by_feature"] + ([section["intersection"]] if section.get("intersection") else [])
    groups = [g for a in analyses for g in a["groups"]]
    figure = _figure(7.2, 0.12 * len(groups) * (len(metrics) + 1) + 1.6)
    ax = figure.add_subplot()
    height = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        positions = np.arange(len(groups)) + k * height
        values = np.array([g[metric] if g[metric] is not None else np.nan for g in groups])
        low, high = _bounds(groups, metric, values)
        colours = [PALETTE[k % len(PALETTE)] if not g["insufficient"] else GREY for g in groups]
        ax.barh(positions, np.nan_to_num(values), height=height, color=colours, label=label(metric),
                xerr=[np.nan_to_num(values - low), np.nan_to_num(high - values)], error_kw={"elinewidth": 0.8, "capsize": 1.5})
    labels = [f"{g['group']}{' ⚑' if g['insufficient'] else ''} (n={g['count']})" for g in groups]
    ax.set_yticks(np.arange(len(groups)) + 0.4 - height / 2, labels, fontsize=7.5)
    ax.invert_yaxis()
    ax.legend(fontsize=8, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(metrics))
    ax.set_title("Metrics per group with 95%% intervals (⚑ grey = fewer than %d rows, not compared)"
                 % section["small_group_threshold"], fontsize=9.5, pad=22)
    _style(ax)
    return {"title": "Metrics per sensitive group, with 95% intervals", "section": "fairness", "png": _png(figure)}


def _bounds(groups: list[dict], metric: str, values: np.ndarray):
    ci = [(g.get("ci") or {}).get(metric) or [None, None] for g in groups]
    low = np.array([c[0] if c[0] is not None else v for c, v in zip(ci, values)], dtype=float)
    high = np.array([c[1] if c[1] is not None else v for c, v in zip(ci, values)], dtype=float)
    return low, high


def calibration(y_true, score, positive, section: dict, sensitive) -> dict:
    """Reliability diagram: overall, and for each group of the first sensitive feature large enough to compare."""
    from ._outcomes import calibration as table

    figure = _figure(5.2, 4.0)
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="perfectly calibrated")
    overall = table(y_true, score, positive)["bins"]
    ax.plot([b["mean_score"] for b in overall], [b["observed_rate"] for b in overall], marker="o", color=BLUE,
            linewidth=2, markersize=4, label="all rows")
    feature = section["features"][0] if section and section.get("available") else None
    values = sensitive[feature].astype(str).to_numpy() if feature else None
    compared = [g for g in section["by_feature"][0]["groups"] if not g["insufficient"]] if feature else []
    for k, group in enumerate(compared[:6]):
        mask = values == group["values"][feature]
        bins = table(np.asarray(y_true)[mask], score[mask], positive, bins=5)["bins"]
        ax.plot([b["mean_score"] for b in bins], [b["observed_rate"] for b in bins], marker=".", linewidth=1.2,
                linestyle=":", color=PALETTE[(k + 1) % len(PALETTE)], label=f"{group['group']} (n={group['count']})")
    ax.set(xlabel=f"mean predicted P({positive})", ylabel=f"observed share of {positive}", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Calibration: predicted against observed" + (", overall and per group" if compared else ""), fontsize=9.5)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    _style(ax)
    title = "Calibration (reliability)" + (f" overall and per {feature} group" if compared else "")
    return {"title": title, "section": "evaluation", "png": _png(figure)}
