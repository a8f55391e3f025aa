"""Drift statistics on binned counts, and their thresholds calibrated by bootstrapping the reference.

Every statistic is a function of two count vectors over the same bins: the live window's and the
reference's. For a numeric feature the bins are the reference's percentiles (up to 100 fine bins; KS
reads their cumulative shares, PSI groups them into deciles) plus a null bin; for a categorical one they
are the reference's categories, an "unseen" bin and a null bin.

Thresholds: ``REPLICATES`` times, draw a pseudo-reference of the reference's size and a window of the
live window's size, both from the reference's bin shares, and compute the statistics between them.
Counts are drawn as independent Poisson counts per bin (a multinomial whose total is itself Poisson:
four times faster than numpy's multinomial; at 30 rows the shares vary about 3% more than with a fixed
total, which makes the thresholds about 1% larger, erring towards fewer alarms). Drawing the reference too accounts
for the reference being a sample itself, so held-out rows from the training population alarm at the
nominal rate, and windows resampled from the reference itself alarm less often. A feature's tests are
calibrated together (max-type, on their ranks among the replicates): the feature alarms, whatever test
fires, in at most ``alpha`` of the replicates. Results are cached per (feature, window size), the size
rounded down to two significant digits (a smaller window has larger thresholds: this errs towards
fewer alarms, by at most about 5%, and lets time windows of slightly different sizes share the work).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

REPLICATES = 2000  # at alpha = 0.01, 20 replicates beyond the cutoff
SMOOTHING = 0.5  # added to every bin's count before PSI's logarithm


def psi(live: np.ndarray, ref: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Population stability index over ``groups`` (fine bin -> PSI bin); rows of ``live``/``ref`` are replicates."""
    size = int(groups.max()) + 1
    lg, rg = _group(live, groups, size), _group(ref, groups, size)
    p = (lg + SMOOTHING) / (lg.sum(axis=-1, keepdims=True) + SMOOTHING * size)
    q = (rg + SMOOTHING) / (rg.sum(axis=-1, keepdims=True) + SMOOTHING * size)
    return ((p - q) * np.log(p / q)).sum(axis=-1)


def _group(counts: np.ndarray, groups: np.ndarray, size: int) -> np.ndarray:
    """Sum the fine bins of each group; groups are runs of consecutive bins (deciles, or one bin each)."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.add.reduceat(counts, starts, axis=-1)


def ks(live: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Largest gap between the cumulative shares of the non-null bins (NaN when a side has no value)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        fl = np.cumsum(live, axis=-1) / live.sum(axis=-1, keepdims=True)
        fr = np.cumsum(ref, axis=-1) / ref.sum(axis=-1, keepdims=True)
    return np.abs(fl - fr).max(axis=-1)


def chi2(live: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The chi-square statistic of homogeneity of the 2 x bins table (live, reference); empty bins add 0."""
    n, m = live.sum(axis=-1, keepdims=True), ref.sum(axis=-1, keepdims=True)
    total = live + ref
    with np.errstate(invalid="ignore", divide="ignore"):
        el, er = total * n / (n + m), total * m / (n + m)
        terms = np.where(total > 0, (live - el) ** 2 / el + (ref - er) ** 2 / er, 0.0)
    return terms.sum(axis=-1)


def null_change(live_nulls, live_rows, ref_nulls, ref_rows) -> np.ndarray:
    """Absolute change of the null rate."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(np.asarray(live_nulls) / live_rows - np.asarray(ref_nulls) / ref_rows)


def statistics(spec: dict, live: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """The tests of one feature from bin counts (last bin = null); ``spec`` comes from the reference."""
    tests = spec["tests"]
    out = {}
    if "psi" in tests:
        out["psi"] = psi(live, ref, np.asarray(spec["psi_groups"] + [max(spec["psi_groups"]) + 1]))
    if "ks" in tests:
        out["ks"] = ks(live[..., :-1], ref[..., :-1])
    if "chi2" in tests:
        out["chi2"] = chi2(live, ref)
    if "null_rate" in tests:
        out["null_rate"] = null_change(live[..., -1], live.sum(axis=-1), ref[..., -1], ref.sum(axis=-1))
    return out


def reference_counts(spec: dict) -> np.ndarray:
    """The reference's counts over all bins: values (plus an unseen bin for categories), then nulls."""
    if spec["kind"] == "text":
        return np.asarray([spec["rows"] - spec["nulls"], spec["nulls"]], dtype="float64")
    unseen = [0] if spec["kind"] in ("categorical", "boolean", "classes") else []
    return np.asarray(spec["counts"] + unseen + [spec["nulls"]], dtype="float64")


_CACHE: dict[str, dict[str, float]] = {}


def calibrate(spec: dict, rows: int, alpha: float, seed: int = 0) -> dict[str, float]:
    """Each test's threshold for a window of ``rows`` rows (cached per feature and size)."""
    key = _key(spec)
    size = calibration_size(rows)
    entry = _entry(key, size, alpha, seed)
    if entry not in _CACHE:
        _CACHE[entry] = _calibrate(key, spec, size, float(alpha), seed)
    return dict(_CACHE[entry])


def reuse(reference: dict) -> int:
    """Cache the thresholds a reference was packaged with (``reference["thresholds"]``, per window size).

    :func:`make_reference` computed them with :func:`calibrate`, the same seed and replicates, so they are
    exactly what a report at those sizes would compute; a report there then draws no bootstrap. (Sizes in
    between or beyond are still drawn: a feature's tests are calibrated together, and PSI's threshold
    does not follow a scaling law from 10,000 rows up: rescaled, it came out 10-40% below the bootstrap's at
    1M rows, which would raise false alarms.) Returns how many entries it added.
    """
    if reference.get("replicates") != REPLICATES:
        return 0
    specs = {f["name"]: f for f in reference["features"]}
    if reference.get("prediction"):
        specs["(prediction)"] = reference["prediction"]
    added = 0
    for size, by_feature in (reference.get("thresholds") or {}).items():
        for name, values in by_feature.items():
            if name not in specs or calibration_size(int(size)) != int(size):
                continue
            entry = _entry(_key(specs[name]), int(size), reference["alpha"], 0)
            if entry not in _CACHE:
                _CACHE[entry] = {t: float("inf") if v is None else float(v) for t, v in values.items()}
                added += 1
    return added


def _key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _entry(key: str, size: int, alpha: float, seed: int) -> str:
    return f"{key[:16]}:{size}:{float(alpha)!r}:{seed}:{REPLICATES}"


def load_cache(path) -> None:
    """Add thresholds saved by :func:`save_cache` (a report in a new process then skips the bootstrap)."""
    try:
        saved = json.loads(open(path).read())
        _CACHE.update({k: {t: (float("inf") if v is None else v) for t, v in d.items()}
                       for k, d in saved.items() if k not in _CACHE})
    except (OSError, ValueError):
        pass  # no cache yet, or a damaged one: thresholds are recomputed


def save_cache(path, limit: int = 20000) -> None:
    import os

    entries = dict(list(_CACHE.items())[-limit:])
    temp = f"{path}.tmp{os.getpid()}"
    with open(temp, "w") as handle:
        json.dump({k: {t: (v if np.isfinite(v) else None) for t, v in d.items()} for k, d in entries.items()}, handle)
    os.replace(temp, path)


def calibration_size(rows: int) -> int:
    """``rows`` rounded down to two significant digits (637 -> 630, 1,234,567 -> 1,200,000)."""
    rows = max(int(rows), 1)
    step = 10 ** max(len(str(rows)) - 2, 0)
    return rows // step * step


def _calibrate(key: str, spec: dict, rows: int, alpha: float, seed: int) -> dict[str, float]:
    counts = reference_counts(spec)
    total = int(counts.sum())
    rng = np.random.default_rng([seed, rows, int(key[:8], 16)])
    shares = counts / total
    ref = rng.poisson(total * shares, size=(REPLICATES, len(shares))).astype("float64")
    live = rng.poisson(rows * shares, size=(REPLICATES, len(shares))).astype("float64")
    return max_type_thresholds(statistics(spec, live, ref), alpha)


def max_type_thresholds(stats: dict[str, np.ndarray], alpha: float) -> dict[str, float]:
    """Per-test thresholds such that, over the replicates, any test exceeds its own in at most ``alpha``.

    Each replicate's value of a test gets its tail share (the share of replicates at least as large);
    a replicate alarms when its smallest tail share is at most a cutoff, the largest cutoff that keeps
    alarms to ``alpha`` of the replicates. A test that never varies (a column never null) never takes
    the alarm budget: its threshold is that constant value.
    """
    names = list(stats)
    values = np.vstack([np.nan_to_num(stats[n], nan=-np.inf) for n in names])  # tests x replicates
    replicates = values.shape[1]
    tails = np.vstack([replicates - np.searchsorted(np.sort(v), v, side="left") for v in values]) / replicates
    smallest = tails.min(axis=0)
    cuts = np.unique(smallest)
    share = np.searchsorted(np.sort(smallest), cuts, side="right") / replicates  # share with smallest <= cut
    allowed = cuts[share <= alpha]
    cutoff = allowed.max() if allowed.size else 0.0
    thresholds = {}
    for name, v, tail in zip(names, values, tails):
        quiet = v[tail > cutoff]
        thresholds[name] = float(quiet.max()) if quiet.size else float(v.max())
    return {k: (t if np.isfinite(t) else float("inf")) for k, t in thresholds.items()}
