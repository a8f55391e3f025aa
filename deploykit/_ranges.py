"""The numbers a model takes, found when the package is made, so that the service refuses the others.

A float64 column holds up to 1.8e308, but scikit-learn's trees read their input as float32 and fail
beyond 3.4e38, and other models overflow sooner. For each integer and number column, one training row
is sent through the model with the column set to ever larger magnitudes (a bisection over
:data:`PROBES`, each sign apart); the largest the model answers with finite outputs is recorded as the
column's ``accepts`` range. The validator and the OpenAPI document use it: a value outside is a 422
before the model sees it, on every serving path.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd

PROBES = (1e6, 1e10, 1e15, 1e18, 1e20, 1e30, 1e38, 3.4028234663852886e38, 1e50, 1e100, 1e200, 1e300,
          1.7976931348623157e308)  # ascending: answering one is taken to mean answering those below
MAX_SECONDS = 10.0  # a model this slow to probe keeps its dtype's range


def probe_ranges(model: Any, frame: pd.DataFrame, schema: dict, to_input: Callable, classifier: bool) -> None:
    """Set ``accepts`` on each integer and number column of ``schema`` (in place) where the model takes
    less than the column's dtype holds."""
    from ._runtime.schema import value_range

    started = time.perf_counter()
    for column in schema["columns"]:
        if column["kind"] not in ("integer", "number") or time.perf_counter() - started > MAX_SECONDS:
            continue
        low, high = value_range(column)
        probes = [p for p in PROBES if p < high] + [high]  # the dtype's own bound last
        answers = _prober(model, frame, column, to_input, classifier)
        top, bottom = _largest(probes, answers), _largest(probes, lambda v: answers(-v))
        if top is None or bottom is None or (top == high and bottom == high):
            continue  # the model takes the whole range, or fails even on small values: no bound learnt
        kind = int if column["kind"] == "integer" else float
        column["accepts"] = [low if bottom == high else kind(-bottom), high if top == high else kind(top)]


def _prober(model, frame: pd.DataFrame, column: dict, to_input: Callable, classifier: bool) -> Callable[[float], bool]:
    row, name = frame.iloc[:1], column["name"]

    def answers(value: float) -> bool:
        probe = row.copy()
        value = int(value) if column["kind"] == "integer" else value  # int(-(2**63 - 1)) is exact; floats are not
        probe[name] = pd.Series([value], index=row.index, dtype=frame[name].dtype)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):  # the probes overflow on purpose
                warnings.simplefilter("ignore")
                outputs = [model.predict(to_input(probe))] + ([model.predict_proba(to_input(probe))] if classifier else [])
        except Exception:  # noqa: BLE001 - that the model fails is the finding
            return False
        return all(np.isfinite(np.asarray(o, dtype="float64")).all() for o in outputs if _numeric(o))

    return answers


def _largest(probes: list[float], works: Callable[[float], bool]) -> float | None:
    """The largest probe that works (bisection over the ascending probes), or None if none does."""
    lo, hi = -1, len(probes)  # probes[lo] works (lo = -1: none known), probes[hi] fails
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if works(probes[middle]):
            lo = middle
        else:
            hi = middle
    return probes[lo] if lo >= 0 else None


def _numeric(values: Any) -> bool:
    return np.asarray(values).dtype.kind in "fiub"
