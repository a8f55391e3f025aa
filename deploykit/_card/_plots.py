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


def roc(y_true, proba, task: str, classes: list, metrics: dict) -> dict:
    from sklearn.metrics import roc_curve

    figure = _figure(4.6, 3.8)
    ax = figure.add_subplot()
    if task == "binary":
        fpr, tpr, _ = roc_curve(np.asarray(y_true) == classes[1], proba[:, 1])
        auc = metrics["roc_auc"]
        ax.plot(fpr, tpr, color=BLUE, linewidth=2,
                label=f"class {classes[1]}: AUC {auc['value']:.3f} (95% CI {auc['ci_low']:.3f}–{auc['ci_high']:.3f})")
    else:
        for k, label in enumerate(classes):
            fpr, tpr, _ = roc_curve(np.asarray(y_true) == label, proba[:, k])
            ax.plot(fpr, tpr, color=PALETTE[k % len(PALETTE)], linewidth=1.8, label=f"{label} vs rest")
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("ROC curve on held-out data", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right", frameon=False)
    _style(ax)
    return {"title": "ROC curve on held-out data", "section": "evaluation", "png": _png(figure)}


def confusion(matrix: list[list[int]], labels: list[str]) -> dict:
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
    return {"title": "Confusion matrix on held-out data", "section": "evaluation", "png": _png(figure)}


def residuals(y_true, predicted) -> dict:
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
    return {"title": "Residuals on held-out data", "section": "evaluation", "png": _png(figure)}


def shap_summary(names: list[str], values: np.ndarray, frame, ranking: list[dict], output: str, top: int = 12) -> dict:
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
    ax.set_title("SHAP summary: each dot is one held-out row (red = high value, blue = low)", fontsize=9)
    _style(ax)
    return {"title": "SHAP summary on held-out rows", "section": "explainability", "png": _png(figure)}


def fairness(section: dict) -> dict:
    """Per feature, the headline rates of each group (binary) or its accuracy / MAE."""
    from ._render import label

    metrics = {"selection_rate", "tpr", "fpr", "accuracy", "recall_macro", "mae"}
    metrics = [m for m in section["metrics"] if m in metrics and not (m == "accuracy" and "tpr" in section["metrics"])]
    groups = [g for a in section["by_feature"] for g in a["groups"]]
    figure = _figure(6.8, 0.22 * len(groups) * (len(metrics) + 1) + 1.4)
    ax = figure.add_subplot()
    height = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        positions = np.arange(len(groups)) + k * height
        ax.barh(positions, [g[metric] if g[metric] is not None else 0 for g in groups], height=height,
                color=PALETTE[k % len(PALETTE)], label=label(metric))
    labels = [f"{g['group']}{' ⚑' if g['small'] else ''} (n={g['count']})" for g in groups]
    ax.set_yticks(np.arange(len(groups)) + 0.4 - height / 2, labels, fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=8, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(metrics))
    ax.set_title("Metrics per group (⚑ = fewer than %d rows)" % section["small_group_threshold"], fontsize=10, pad=22)
    _style(ax)
    return {"title": "Metrics per sensitive group", "section": "fairness", "png": _png(figure)}
