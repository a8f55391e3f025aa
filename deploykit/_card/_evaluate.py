"""Held-out evaluation: scikit-learn's metrics, with percentile-bootstrap 95% confidence intervals.

Point values come from :mod:`sklearn.metrics`. The bootstrap draws ``N_BOOTSTRAP`` resamples as
multinomial row counts and evaluates every metric for all of them at once as weighted sums, which with
all weights equal to one are exactly scikit-learn's definitions (a test holds them to that).
"""

from __future__ import annotations

import numpy as np

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
_CHUNK = 100


def evaluate(y_true, predicted, proba, task: str, classes: list | None, *, seed: int = 0) -> dict:
    """Metrics with confidence intervals, and the confusion matrix for classifiers."""
    y_true, predicted = np.asarray(y_true), np.asarray(predicted)
    points = point_metrics(y_true, predicted, proba, task, classes)
    bounds = bootstrap(y_true, predicted, proba, task, classes, seed=seed)
    result = {
        "rows": int(len(y_true)),
        "average": None,
        "n_bootstrap": N_BOOTSTRAP,
        "confidence": CONFIDENCE,
        "metrics": [
            {"name": name, "value": value, "ci_low": bounds[name][0], "ci_high": bounds[name][1]}
            for name, value in points.items()
        ],
    }
    if task != "regression":
        from sklearn.metrics import confusion_matrix

        result["confusion_matrix"] = {
            "labels": [str(c) for c in classes],
            "matrix": confusion_matrix(y_true, predicted, labels=classes).tolist(),
        }
        result["average"] = "binary" if task == "binary" else "macro"
        if task == "binary":
            result["positive_class"] = classes[1]
    return result


def point_metrics(y_true, predicted, proba, task: str, classes: list | None) -> dict[str, float | None]:
    from sklearn import metrics as m

    if task == "regression":
        return {
            "mae": float(m.mean_absolute_error(y_true, predicted)),
            "rmse": float(np.sqrt(m.mean_squared_error(y_true, predicted))),
            "r2": float(m.r2_score(y_true, predicted)),
        }
    binary = task == "binary"
    average = {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro", "labels": classes}
    scores = {
        "accuracy": float(m.accuracy_score(y_true, predicted)),
        "precision": float(m.precision_score(y_true, predicted, zero_division=0, **average)),
        "recall": float(m.recall_score(y_true, predicted, zero_division=0, **average)),
        "f1": float(m.f1_score(y_true, predicted, zero_division=0, **average)),
        "roc_auc": None,
        "log_loss": None,
    }
    if proba is not None and len(np.unique(y_true)) == len(classes):
        if binary:
            scores["roc_auc"] = float(m.roc_auc_score(y_true == classes[1], proba[:, 1]))
        else:
            scores["roc_auc"] = float(m.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))
    if proba is not None:
        scores["log_loss"] = float(m.log_loss(y_true, proba, labels=classes))
    return scores


def bootstrap(y_true, predicted, proba, task, classes, *, seed: int = 0) -> dict[str, tuple]:
    """Percentile intervals over ``N_BOOTSTRAP`` resamples of the rows."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws: dict[str, list] = {}
    for start in range(0, N_BOOTSTRAP, _CHUNK):
        weights = rng.multinomial(n, np.full(n, 1 / n), size=min(_CHUNK, N_BOOTSTRAP - start)).astype("float64")
        for name, values in weighted_metrics(weights, y_true, predicted, proba, task, classes).items():
            draws.setdefault(name, []).append(values)
    tail = 100 * (1 - CONFIDENCE) / 2
    bounds = {}
    for name, chunks in draws.items():
        values = np.concatenate(chunks)
        values = values[np.isfinite(values)]
        bounds[name] = (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if len(values) else (None, None)
    return bounds


def weighted_metrics(W: np.ndarray, y_true, predicted, proba, task, classes) -> dict[str, np.ndarray]:
    """Every metric for each row of weights ``W`` (resamples × rows)."""
    n = W.sum(axis=1)
    if task == "regression":
        y, error = y_true.astype("float64"), y_true.astype("float64") - predicted.astype("float64")
        sse = W @ error**2
        mean = (W @ y) / n
        sst = W @ y**2 - n * mean**2
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"mae": (W @ np.abs(error)) / n, "rmse": np.sqrt(sse / n), "r2": 1 - sse / sst}
    truth = np.stack([y_true == c for c in classes], axis=1).astype("float64")  # rows × classes
    guess = np.stack([predicted == c for c in classes], axis=1).astype("float64")
    tp, pred_pos, true_pos = W @ (truth * guess), W @ guess, W @ truth
    precision, recall = _ratio(tp, pred_pos), _ratio(tp, true_pos)
    f1 = _ratio(2 * tp, pred_pos + true_pos)
    pick = (lambda a: a[:, 1]) if task == "binary" else (lambda a: a.mean(axis=1))
    out = {"accuracy": (W @ (truth * guess).sum(axis=1)) / n, "precision": pick(precision), "recall": pick(recall),
           "f1": pick(f1), "roc_auc": np.full(len(W), np.nan), "log_loss": np.full(len(W), np.nan)}
    if proba is not None:
        proba = np.asarray(proba, dtype="float64")
        eps = np.finfo(proba.dtype).eps
        p_true = np.clip((proba / proba.sum(axis=1, keepdims=True) * truth).sum(axis=1), eps, 1 - eps)
        out["log_loss"] = (W @ -np.log(p_true)) / n
        columns = [1] if task == "binary" else range(len(classes))
        out["roc_auc"] = np.mean([weighted_auc(W, truth[:, k].astype(bool), proba[:, k]) for k in columns], axis=0)
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, with 0 where b is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def weighted_auc(W: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC per weight row: the weighted chance a positive outscores a negative (ties count half)."""
    order = np.argsort(score, kind="mergesort")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    pos = np.add.reduceat(W[:, order] * positive[order], starts, axis=1)
    neg = np.add.reduceat(W[:, order] * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
