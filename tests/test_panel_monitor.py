"""The deploy panel's Monitor view, driven from Python: window fields, Refresh, verdict, report, errors.

The deployment is a stand-in whose ``monitor`` is the real core (``deploykit._monitor.monitor``) over a
real capture database written by the front's ``CaptureWriter``; tests/test_panel.py clicks Refresh on a
real served deployment.
"""

from __future__ import annotations

import html
import time

import pytest

pytest.importorskip("ipywidgets")

import deploykit
from deploykit._front.capture import CaptureWriter
from deploykit._monitor.report import monitor

from tests.test_monitor_drift import data, ref  # noqa: F401 - shared fixtures
from tests.test_monitor_store import capture_frame


class CapturedDeployment:
    """What the Monitor view uses of a Deployment (name, stopped, monitor), over a real capture store."""

    def __init__(self, reference: dict, state_dir) -> None:
        self.name, self.stopped, self.windows = "churn", False, []
        self.reference, self.state_dir = reference, state_dir

    def monitor(self, window=None):
        self.windows.append(window)
        return monitor(self.reference, self.state_dir, window=window)


@pytest.fixture
def panel(churn, churn_model):
    X_train, X_test, y_train, y_test = churn
    return deploykit.DeployPanel(churn_model, X_train, y_train, X_test, y_test, name="churn")


@pytest.fixture
def shifted(tmp_path, ref, data):  # noqa: F811
    """A capture of the held-out rows with tenure_months shifted by 1.5 sd (a top-3 SHAP feature: drift)."""
    rows = data["held_out"].copy()
    rows["tenure_months"] += 1.5 * data["train"]["tenure_months"].std()
    writer = CaptureWriter(tmp_path, "churn")
    ids = capture_frame(writer, rows, data["model"].predict(rows), time.time() - 1000)
    writer.close()
    return CapturedDeployment(ref, tmp_path), ids


def test_the_view_is_part_of_the_live_area_and_hidden_until_a_deployment_is_live(panel, shifted):
    dep, _ = shifted
    view = panel.monitor
    assert view.box in panel.live.children and "dk-monitor-box" in view.box._dom_classes
    for widget, cls in [(view.by, "dk-monitor-by"), (view.rows, "dk-monitor-rows"), (view.duration, "dk-monitor-duration"),
                        (view.refresh_button, "dk-monitor-refresh"), (view.verdict, "dk-monitor-verdict"),
                        (view.view, "dk-monitor-report")]:
        assert cls in widget._dom_classes
    assert view.box.layout.display == "none" and 'data-verdict="none"' in view.verdict.value
    view.show(dep)
    assert view.box.layout.display != "none" and not view.refresh_button.disabled
    dep.stopped = True
    view.show(dep)
    assert view.box.layout.display == "none" and view.refresh_button.disabled


def test_refresh_shows_the_verdict_and_the_reports_own_html(panel, shifted):
    dep, _ = shifted
    panel.monitor.show(dep)
    panel.monitor.rows.value = 600
    panel.monitor.refresh_button.click()
    assert panel.error is None, panel.error_box.value
    assert dep.windows == [600]
    report = panel.monitor.report
    assert report.window["rows"] == 600 and report.drifted
    assert panel.monitor.view.value == report._repr_html_()
    verdict = html.unescape(panel.monitor.verdict.value)
    assert 'data-verdict="drift"' in verdict and "DRIFT" in verdict and "600 rows" in verdict
    assert "tenure_months" in verdict  # the reason, at a glance


def test_the_window_is_rows_or_a_duration(panel, shifted):
    dep, _ = shifted
    panel.monitor.show(dep)
    assert panel.monitor.duration.layout.display == "none"
    panel.monitor.by.value = "duration"
    assert panel.monitor.rows.layout.display == "none" and panel.monitor.duration.layout.display != "none"
    panel.monitor.duration.value = " 2h "
    panel.monitor.refresh_button.click()
    assert panel.error is None, panel.error_box.value
    assert dep.windows == ["2h"] and panel.monitor.report.window["rows"] == 600
    panel.monitor.by.value = "rows"
    panel.monitor.rows.value = 20
    panel.monitor.refresh_button.click()
    assert dep.windows[-1] == 20
    assert 'data-verdict="insufficient"' in panel.monitor.verdict.value and "20 rows" in panel.monitor.verdict.value


def test_a_bad_window_shows_in_the_panel_and_keeps_the_last_report(panel, shifted):
    dep, _ = shifted
    panel.monitor.show(dep)
    panel.monitor.refresh_button.click()
    shown = panel.monitor.view.value
    panel.monitor.by.value = "duration"
    panel.monitor.duration.value = "soon"
    panel.monitor.refresh_button.click()
    assert isinstance(panel.error, deploykit.ConfigError)
    assert "window" in html.unescape(panel.error_box.value) and panel.error_box.layout.display != "none"
    assert panel.monitor.view.value == shown and 'data-verdict="drift"' in panel.monitor.verdict.value


def test_logged_outcomes_put_performance_in_the_verdict_line(panel, shifted, data):  # noqa: F811
    dep, ids = shifted
    deploykit._monitor.CaptureStore(dep.state_dir).log_outcomes(ids, data["y_held_out"].to_numpy())
    panel.monitor.show(dep)
    panel.monitor.refresh_button.click()
    accuracy = next(m for m in panel.monitor.report.performance["metrics"] if m["name"] == "accuracy")
    assert f"accuracy {accuracy['value']:.3g}" in panel.monitor.verdict.value
    assert "600 labelled rows" in panel.monitor.verdict.value


def test_another_deployment_starts_without_the_previous_report(panel, shifted, tmp_path, ref):  # noqa: F811
    dep, _ = shifted
    panel.monitor.show(dep)
    panel.monitor.refresh_button.click()
    assert panel.monitor.report is not None
    other = CapturedDeployment(ref, tmp_path)
    other.name = "another"
    panel.monitor.show(other)
    assert panel.monitor.report is None and panel.monitor.view.value == ""
    assert 'data-verdict="none"' in panel.monitor.verdict.value
