"""Monitoring a deployment's model on the host: capture store, reference fingerprint, drift, report.

- :mod:`.store`: the capture database the front writes (:mod:`deploykit._front.capture`), read by window;
  outcomes; Parquet export; retention.
- :mod:`.reference`: the fingerprint made at packaging (:func:`make_reference`).
- :mod:`.stats` and :mod:`.drift`: tests on binned counts, thresholds calibrated by bootstrap per window size.
- :mod:`.performance`: live metrics from logged outcomes, with confidence intervals.
- :mod:`.report`: :func:`monitor` and :class:`MonitorReport`; :mod:`.render` draws it; :mod:`.card`
  gives the card's monitoring and post-market sections.
"""

from .reference import make_reference, top_shap_features
from .report import MonitorReport, load_reference, monitor
from .store import CaptureStore, Window

__all__ = ["CaptureStore", "MonitorReport", "Window", "load_reference", "make_reference", "monitor", "top_shap_features"]
