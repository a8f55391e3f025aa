"""Evaluation: scikit-learn's metrics, with percentile-bootstrap 95% confidence intervals.

Point values come from :mod:`sklearn.metrics`. The bootstrap draws ``N_BOOTSTRAP`` resamples as
multinomial row counts and evaluates every metric for all of them at once as weighted sums, which with
all weights equal to one are exactly scikit-learn's definitions (a test holds them to that). The same
draws compare two models on the same rows (:func:`paired_differences`): each resample scores both, so
the interval of the difference is not inflated by the noise both share.

For a binary classifier every rate is about the *positive class* (the card's ``positive_class``,
by default the second class), and the labels are those the decision threshold gives.
"""

from __future__ import annotations

import numpy as np

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
_CHUNK = 100


def evaluate(y_true, predicted, proba, task: str, classes: list | None, *, positive=None, seed: int = 0) -> dict:
    """Metrics with confidence intervals; for classifiers also per class and the confusion matrix."""
    y_true, predicted = np.asarray(y_true), np.asarray(predicted)
    positive = _positive(task, classes, positive)
    points = point_metrics(y_true, predicted, proba, task, classes, positive)
    bounds = bootstrap(y_true, predicted, proba, task, classes, positive, seed=seed)
    result = {
        "rows": int(len(y_true)),
        "average": None,
        "n_bootstrap": N_BOOTSTRAP,
        "confidence": CONFIDENCE,
        "metrics": [_metric(name, value, bounds[name]) for name, value in points.items()],
    }
    if task != "regression":
        from sklearn.metrics import confusion_matrix

        result["confusion_matrix"] = {
            "labels": [str(c) for c in classes],
            "matrix": confusion_matrix(y_true, predicted, labels=classes).tolist(),
        }
        result["average"] = "binary" if task == "binary" else "macro"
        result["per_class"] = per_class(y_true, predicted, classes, bounds)
        if task == "binary":
            result["positive_class"] = positive
    return result


def _metric(name: str, value, bounds: tuple) -> dict:
    return {"name": name, "value": value, "ci_low": bounds[0], "ci_high": bounds[1]}


def _positive(task: str, classes: list | None, positive):
    if task != "binary":
        return None
    return classes[1] if positive is None else positive


def point_metrics(y_true, predicted, proba, task: str, classes: list | None, positive=None) -> dict[str, float | None]:
    from sklearn import metrics as m

    if task == "regression":
        return {
            "mae": float(m.mean_absolute_error(y_true, predicted)),
            "rmse": float(np.sqrt(m.mean_squared_error(y_true, predicted))),
            "r2": float(m.r2_score(y_true, predicted)),
        }
    binary = task == "binary"
    positive = _positive(task, classes, positive)
    average = {"average": "binary", "pos_label": positive} if binary else {"average": "macro", "labels": classes}
    scores = {
        "accuracy": float(m.accuracy_score(y_true, predicted)),
        "precision": float(m.precision_score(y_true, predicted, zero_division=0, **average)),
        "recall": float(m.recall_score(y_true, predicted, zero_division=0, **average)),
        "f1": float(m.f1_score(y_true, predicted, zero_division=0, **average)),
        "roc_auc": None,
    }
    if binary:
        scores.update(gini=None, ks=None)
    scores.update(brier=None, log_loss=None)
    if proba is None:
        return scores
    proba = np.asarray(proba, dtype="float64")
    if len(np.unique(y_true)) == len(classes):
        if binary:
            score, flagged = proba[:, classes.index(positive)], y_true == positive
            scores["roc_auc"] = float(m.roc_auc_score(flagged, score))
            scores["gini"] = 2 * scores["roc_auc"] - 1
            fpr, tpr, _ = m.roc_curve(flagged, score, drop_intermediate=False)
            scores["ks"] = float(np.max(np.abs(tpr - fpr)))  # the widest gap between the two classes' score CDFs
        else:
            scores["roc_auc"] = float(m.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))
    if binary:
        scores["brier"] = float(m.brier_score_loss(y_true == positive, proba[:, classes.index(positive)]))
    else:
        truth = np.stack([y_true == c for c in classes], axis=1)
        scores["brier"] = float(np.mean(((proba - truth) ** 2).sum(axis=1)))
    scores["log_loss"] = float(m.log_loss(y_true, proba, labels=classes))
    return scores


def per_class(y_true, predicted, classes: list, bounds: dict) -> list[dict]:
    """Precision, recall and F1 of every class taken as the positive one, with their intervals."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(y_true, predicted, labels=classes, zero_division=0)
    rows = []
    for k, label in enumerate(classes):
        values = {"precision": precision[k], "recall": recall[k], "f1": f1[k]}
        rows.append({"class": str(label), "support": int(support[k]),
                     "metrics": [_metric(name, float(v), bounds[f"{name}@{k}"]) for name, v in values.items()]})
    return rows


# -- the bootstrap ----------------------------------------------------------------------------------------
def resamples(n: int, seed: int):
    """The bootstrap's row-count matrices, ``_CHUNK`` resamples at a time (the same for the same seed)."""
    rng = np.random.default_rng(seed)
    for start in range(0, N_BOOTSTRAP, _CHUNK):
        yield rng.multinomial(n, np.full(n, 1 / n), size=min(_CHUNK, N_BOOTSTRAP - start)).astype("float64")


def percentile_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """The percentile interval of the finite draws (an undefined draw, such as recall without positives, is left out)."""
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def bootstrap(y_true, predicted, proba, task, classes, positive=None, *, seed: int = 0) -> dict[str, tuple]:
    """Percentile intervals over ``N_BOOTSTRAP`` resamples of the rows, per metric and per class."""
    positive = _positive(task, classes, positive)
    draws: dict[str, list] = {}
    for W in resamples(len(y_true), seed):
        values = weighted_metrics(W, y_true, predicted, proba, task, classes, positive)
        if task != "regression":
            values.update(weighted_per_class(W, y_true, predicted, classes))
        for name, value in values.items():
            draws.setdefault(name, []).append(value)
    return {name: percentile_interval(np.concatenate(chunks)) for name, chunks in draws.items()}


def paired_differences(y_true, first: tuple, second: tuple, task, classes, positive=None, *, seed: int = 0) -> dict:
    """``first`` minus ``second`` (each ``(predicted, proba)``) per metric, with a paired bootstrap interval."""
    positive = _positive(task, classes, positive)
    points = [point_metrics(y_true, *model, task, classes, positive) for model in (first, second)]
    draws: dict[str, list] = {}
    for W in resamples(len(y_true), seed):
        a, b = (weighted_metrics(W, y_true, *model, task, classes, positive) for model in (first, second))
        for name in a:
            draws.setdefault(name, []).append(a[name] - b[name])
    out = {}
    for name, chunks in draws.items():
        value = None if points[0][name] is None or points[1][name] is None else points[0][name] - points[1][name]
        out[name] = _metric(name, value, percentile_interval(np.concatenate(chunks)) if value is not None else (None, None))
    return out


def weighted_metrics(W: np.ndarray, y_true, predicted, proba, task, classes, positive=None) -> dict[str, np.ndarray]:
    """Every metric for each row of weights ``W`` (resamples × rows)."""
    n = W.sum(axis=1)
    if task == "regression":
        y, error = y_true.astype("float64"), y_true.astype("float64") - predicted.astype("float64")
        sse = W @ error**2
        mean = (W @ y) / n
        sst = W @ y**2 - n * mean**2
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"mae": (W @ np.abs(error)) / n, "rmse": np.sqrt(sse / n), "r2": 1 - sse / sst}
    binary = task == "binary"
    k = classes.index(_positive(task, classes, positive)) if binary else None
    truth, guess = _indicators(y_true, classes), _indicators(predicted, classes)
    precision, recall, f1 = _class_rates(W, truth, guess)
    pick = (lambda a: a[:, k]) if binary else (lambda a: a.mean(axis=1))
    undefined = np.full(len(W), np.nan)
    out = {"accuracy": (W @ (truth * guess).sum(axis=1)) / n, "precision": pick(precision), "recall": pick(recall),
           "f1": pick(f1), "roc_auc": undefined}
    if binary:
        out.update(gini=undefined, ks=undefined)
    out.update(brier=undefined, log_loss=undefined)
    if proba is None:
        return out
    proba = np.asarray(proba, dtype="float64")
    eps = np.finfo(proba.dtype).eps
    p_true = np.clip((proba / proba.sum(axis=1, keepdims=True) * truth).sum(axis=1), eps, 1 - eps)
    out["log_loss"] = (W @ -np.log(p_true)) / n
    if binary:
        flagged, score = truth[:, k].astype(bool), proba[:, k]
        out["roc_auc"] = weighted_auc(W, flagged, score)
        out["gini"] = 2 * out["roc_auc"] - 1
        out["ks"] = weighted_ks(W, flagged, score)
        out["brier"] = (W @ (score - truth[:, k]) ** 2) / n
    else:
        out["roc_auc"] = np.mean([weighted_auc(W, truth[:, c].astype(bool), proba[:, c]) for c in range(len(classes))], axis=0)
        out["brier"] = (W @ ((proba - truth) ** 2).sum(axis=1)) / n
    return out


def weighted_per_class(W: np.ndarray, y_true, predicted, classes) -> dict[str, np.ndarray]:
    precision, recall, f1 = _class_rates(W, _indicators(y_true, classes), _indicators(predicted, classes))
    out = {}
    for k in range(len(classes)):
        out.update({f"precision@{k}": precision[:, k], f"recall@{k}": recall[:, k], f"f1@{k}": f1[:, k]})
    return out


def _indicators(values, classes) -> np.ndarray:
    """Rows × classes, 1.0 where the row's value is that class."""
    return np.stack([np.asarray(values) == c for c in classes], axis=1).astype("float64")


def _class_rates(W, truth, guess):
    tp, pred_pos, true_pos = W @ (truth * guess), W @ guess, W @ truth
    return _ratio(tp, pred_pos), _ratio(tp, true_pos), _ratio(2 * tp, pred_pos + true_pos)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, with 0 where b is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _score_steps(W: np.ndarray, positive: np.ndarray, score: np.ndarray):
    """Weighted positives and negatives per distinct score, in increasing score order (resamples × scores)."""
    order = np.argsort(score, kind="mergesort")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    pos = np.add.reduceat(W[:, order] * positive[order], starts, axis=1)
    neg = np.add.reduceat(W[:, order] * ~positive[order], starts, axis=1)
    return pos, neg


def weighted_auc(W: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC per weight row: the weighted chance a positive outscores a negative (ties count half)."""
    pos, neg = _score_steps(W, positive, score)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def weighted_ks(W: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Kolmogorov–Smirnov statistic per weight row: the widest gap between the score CDFs of negatives and positives."""
    pos, neg = _score_steps(W, positive, score)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.cumsum(neg, axis=1) / neg.sum(axis=1, keepdims=True) - np.cumsum(pos, axis=1) / pos.sum(axis=1, keepdims=True)
    return np.abs(gap).max(axis=1)
