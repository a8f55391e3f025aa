"""``monitor()``: a deployment's drift and live performance over a window, as a :class:`MonitorReport`.

The report is data first (:meth:`MonitorReport.to_dict`); the notebook display, the plain text and the
Prometheus gauges are renderings of that data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._runtime import artifacts
from .._runtime.manifest import FILENAME as MANIFEST_FILE
from .._runtime.manifest import Manifest
from ..exceptions import ConfigError
from . import drift as _drift
from . import stats
from .performance import performance as _performance
from .store import CaptureStore, Window

REFERENCE_FILE = "monitor_reference.json"
PROM_FILE = "monitor.prom"
MODEL_ENDPOINTS = ("/predict", "/predict_proba")  # a report's rows: /explain answers explain, not predict
THRESHOLDS_CACHE = "monitor-thresholds.json"  # calibrated thresholds per (feature, window size), kept between reports


@dataclass
class MonitorReport:
    """Drift of a window of captured rows against the package's reference, and live performance.

    Made by :func:`monitor` (``Deployment.monitor(window=...)``). Display it in a notebook, print it,
    or read :meth:`to_dict`.
    """

    name: str | None
    version: str | None
    window: dict
    drift: dict
    performance: dict | None
    reference: dict = field(repr=False)
    generated: float = field(default_factory=time.time)

    @property
    def drifted(self) -> bool:
        return self.drift["verdict"]["drift"]

    def to_dict(self) -> dict:
        """The report as JSON-ready data; its keys are a contract (``deploykit monitor NAME --json``)."""
        d = self.drift
        return _clean({
            "name": self.name,
            "version": self.version,
            "generated": _iso(self.generated),
            "window": self.window,
            "status": d["status"],
            "alpha": self.reference["alpha"],
            "reference": {"rows": self.reference["rows"], "source": self.reference["source"],
                          "top_features": self.reference.get("top_features", [])},
            "features": [{"name": f["name"], "kind": f["kind"], **t} for f in d["features"] for t in f["tests"]],
            "feature_summary": [{k: f[k] for k in ("name", "kind", "drifted", "null_rate", "reference_null_rate", "unseen")}
                                for f in d["features"]],
            "prediction": _prediction_dict(d["prediction"]),
            "verdict": d["verdict"],
            "performance": self.performance,
        })

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_text(self) -> str:
        from .render import text

        return text(self.to_dict())

    __str__ = to_text

    def __repr__(self) -> str:
        verdict = self.drift["verdict"]
        state = "insufficient data" if self.drift["status"] != "ok" else ("DRIFT" if verdict["drift"] else "no drift")
        return f"<MonitorReport {self.name or ''} v{self.version} · {self.window['rows']} rows · {state}>"

    def _repr_html_(self) -> str:
        from .render import html

        return html(self)

    def to_prometheus(self) -> str:
        """The drift gauges in Prometheus text format (the front appends ``monitor.prom`` to its /metrics)."""
        from .render import prometheus

        return prometheus(self.to_dict(), self.drift)

    def write_prometheus(self, state_dir: str | Path) -> Path:
        """Write :meth:`to_prometheus` atomically to ``STATE_DIR/monitor.prom``."""
        path = Path(state_dir) / PROM_FILE
        temp = path.with_suffix(f".tmp{os.getpid()}")
        temp.write_text(self.to_prometheus())
        os.replace(temp, path)
        return path


def monitor(package_dir_or_reference: Any, store: Any, window: Any = None, *, version: Any = "reference",
            variant: str | None = None, alpha: float | None = None) -> MonitorReport:
    """Drift and performance of a deployment's captured rows in ``window``.

    Parameters
    ----------
    package_dir_or_reference : path, Package or dict
        A package (its folder or :class:`~deploykit.Package`: the reference artifact it stores), a
        reference JSON file, or the reference itself (:func:`make_reference`).
    store : CaptureStore or path
        The deployment's capture (its state folder or ``capture.sqlite``).
    window : int, str, tuple or dict, optional
        The last N rows (``600``), a duration back from now (``"1h"``), a ``(start, end)`` pair, or
        None for everything captured (see :class:`deploykit._monitor.store.Window`).
    version : str, optional
        Only rows answered by this version; by default the reference's own version; None: all rows.
    variant : str, optional
        Only "live" or "candidate" rows.
    alpha : float, optional
        Override the reference's false-alarm rate per feature.

    Examples
    --------
    >>> report = monitor(pkg.path, dep_state_dir, window=600)   # doctest: +SKIP
    >>> report.to_dict()["verdict"]                             # doctest: +SKIP
    {'drift': False, 'status': 'ok', 'reasons': [], ...}
    """
    reference = load_reference(package_dir_or_reference)
    store = store if isinstance(store, CaptureStore) else CaptureStore(store)
    version = reference.get("version") if version == "reference" else version
    parsed = Window.parse(window)
    kinds = read_kinds(reference)
    frame = store.columns(parsed, list(kinds), kinds=kinds, version=version, variant=variant,
                          endpoints=MODEL_ENDPOINTS, outcomes=True)
    window_info = {"rows": int(len(frame)),
                   "start": _iso(frame["time"].min() if len(frame) else parsed.start),
                   "end": _iso(frame["time"].max() if len(frame) else parsed.end),
                   "requested": _requested(window)}
    cache = store.path.parent / THRESHOLDS_CACHE
    stats.load_cache(cache)
    stats.reuse(reference)
    result = _drift.drift(reference, frame, alpha=alpha)
    try:
        stats.save_cache(cache)
    except OSError:
        pass  # a read-only state folder: thresholds are recomputed next time
    return MonitorReport(name=reference.get("name"), version=None if version is None else str(version),
                         window=window_info, drift=result, performance=_performance(frame, reference),
                         reference=reference)


REFERENCE_ARTIFACT = "monitor_reference"  # the package artifact holding the reference


def load_reference(source: Any) -> dict:
    """The reference fingerprint from a dict, a JSON file, a package folder or a Package."""
    if isinstance(source, dict):
        return source
    path = Path(getattr(source, "path", source))
    if (path / "model" / MANIFEST_FILE).exists():
        manifest = Manifest.read(path / "model")
        record = manifest.artifacts.get(REFERENCE_ARTIFACT)
        if record is None:
            raise ConfigError(f"the package at {path} has no monitoring reference (made before monitoring existed); "
                              "package the model again with this deploykit")
        return json.loads(artifacts.read_verified(path / "model" / record.file, record.sha256))
    if path.is_file():
        return json.loads(path.read_text())
    raise ConfigError(f"cannot find a monitoring reference at {path}; give a package folder, a reference JSON file "
                      "or the reference dict")


def read_kinds(reference: dict) -> dict[str, str]:
    """How to read each captured column so its values compare with the reference."""
    kinds = {f["name"]: ("numeric" if f["kind"] == "numeric" else "text") for f in reference["features"]}
    for spec in reference.get("sensitive", []):
        kinds.setdefault(spec["name"], "text")
    label = "numeric" if reference.get("task") == "regression" else "text"
    kinds["prediction"] = kinds["y_true"] = label
    return kinds


def _prediction_dict(prediction: dict | None) -> dict:
    if prediction is None:
        return {"drifted": False, "status": "not monitored", "tests": []}
    keys = ("drifted", "status", "rows", "tests", "class_shares", "shares", "source")
    return {k: prediction.get(k) for k in keys if k in prediction}


def _requested(window: Any) -> Any:
    if window is None or isinstance(window, (int, str)):
        return window
    return str(window)


def _iso(epoch: float | None) -> str | None:
    if epoch is None or (isinstance(epoch, float) and math.isnan(epoch)):
        return None
    return dt.datetime.fromtimestamp(float(epoch), dt.timezone.utc).isoformat(timespec="seconds")


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
