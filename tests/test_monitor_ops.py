"""The shipped alert rules (checked and unit-tested by promtool) and the Grafana dashboard JSON."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from deploykit._monitor.card import monitoring_section, post_market_section
from deploykit._templates import templates_root
from tests.conftest import require

RULES = templates_root() / "monitoring" / "alerts.yml"
DASHBOARD = templates_root() / "monitoring" / "grafana-dashboard.json"
# FRONT-CONTRACT's series (the histogram's _bucket/_sum/_count are one family)
KNOWN = {
    "deploykit_requests_total", "deploykit_request_duration_seconds", "deploykit_mirror_dropped_total",
    "deploykit_capture_dropped_total", "deploykit_auth_rejected_total", "deploykit_rate_limited_total",
    "deploykit_release_timestamp_seconds", "deploykit_drift_value", "deploykit_drift_threshold",
    "deploykit_drift_detected", "deploykit_drift_verdict", "deploykit_prediction_share",
}

ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'deploykit_drift_verdict{{name="churn",version="3"}}'
        values: '0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
      - series: 'deploykit_requests_total{{name="churn",endpoint="/predict",code="200"}}'
        values: '0+90x30'
      - series: 'deploykit_requests_total{{name="churn",endpoint="/predict",code="500"}}'
        values: '0+10x30'
      - series: 'deploykit_capture_dropped_total{{name="churn"}}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 10m
        alertname: DeployKitDrift
        exp_alerts: []
      - eval_time: 20m
        alertname: DeployKitDrift
        exp_alerts:
          - exp_labels: {{severity: warning, name: churn, version: "3"}}
            exp_annotations:
              summary: "churn v3: the inputs drifted from the training data"
              description: "The monitor's verdict is drift. Read `deploykit monitor churn`: drifted features first, then log outcomes to see whether accuracy fell."
      - eval_time: 20m
        alertname: DeployKitErrors
        exp_alerts:
          - exp_labels: {{severity: critical, name: churn, endpoint: /predict}}
            exp_annotations:
              summary: "churn /predict: over 5% of answers are server errors"
              description: "Read the service logs (`deploykit logs churn`); roll back with `deploykit rollback churn`."
      - eval_time: 20m
        alertname: DeployKitCaptureDropping
        exp_alerts: []
"""


def _promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    require(path is not None, "promtool", "apt-get install prometheus")
    return path


def test_promtool_accepts_the_rules():
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_the_alerts_fire_as_their_unit_tests_say(tmp_path):
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(ALERT_TESTS.format(rules=json.dumps(str(RULES))))
    result = subprocess.run([_promtool(), "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_and_dashboard_use_only_the_fronts_metrics():
    text = RULES.read_text() + DASHBOARD.read_text()
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"deploykit_[a-z_]+", text)}
    assert used <= KNOWN, used - KNOWN
    assert {"deploykit_requests_total", "deploykit_request_duration_seconds", "deploykit_drift_verdict",
            "deploykit_prediction_share", "deploykit_release_timestamp_seconds"} <= used


def test_the_dashboard_is_importable_grafana_json():
    board = json.loads(DASHBOARD.read_text())
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["uid"] and board["title"] and board["__inputs"][0]["pluginId"] == "prometheus"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "bargauge"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(re.search(r"deploykit_[a-z_]+", t["expr"]) for t in panel["targets"])
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("request rate", "4xx", "5xx", "latency quantiles", "drift", "prediction distribution"):
        assert topic in titles
    releases = [a for a in board["annotations"]["list"] if "expr" in a]
    assert releases and "deploykit_release_timestamp_seconds" in releases[0]["expr"]


def test_card_sections_come_from_the_reference(ref):  # noqa: F811
    section = monitoring_section(ref)
    assert [f["name"] for f in section["features"]] == [f["name"] for f in ref["features"]]
    assert section["false_alarm_rate"] == ref["alpha"] and section["min_rows"] == 30
    age = next(f for f in section["features"] if f["name"] == "age")
    assert age["thresholds"]["600"]["ks"] == ref["thresholds"]["600"]["age"]["ks"]
    assert "top-3" in section["verdict_rule"] and "tenure_months" in section["verdict_rule"]
    post = post_market_section(ref, capture=1.0, retention="30d")
    assert post["capture"]["fraction"] == 1.0 and {a["alert"] for a in post["alerts"]} >= {"DeployKitDrift"}
    json.dumps(section), json.dumps(post)


from tests.test_monitor_drift import data, ref  # noqa: E402,F401 - shared fixtures
