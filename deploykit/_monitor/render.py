"""Renderings of a :class:`MonitorReport`: notebook HTML (inline SVG charts), plain text, Prometheus gauges.

Markup in ``templates/display/monitor.html.j2``, CSS in ``templates/display/monitor.css``; the chart
geometry is computed here so the template only places shapes.
"""

from __future__ import annotations

import datetime as dt
import math

from .._templates import read, render

CHART_W, CHART_H, PAD = 260, 90, 14


# -- plain text ---------------------------------------------------------------------------------------
def text(d: dict) -> str:
    w, verdict = d["window"], d["verdict"]
    lines = [f"monitor {d['name'] or ''} v{d['version']}: {w['rows']} rows, {w['start']} → {w['end']}"]
    if d["status"] != "ok":
        lines.append(f"  insufficient data: {'; '.join(verdict['reasons'])}")
    else:
        lines.append(f"  verdict: {'DRIFT' if verdict['drift'] else 'no drift'}"
                     + (f" ({'; '.join(verdict['reasons'])})" if verdict["reasons"] else ""))
        lines += [f"  note: {n}" for n in verdict.get("notes", [])]
        lines.append(f"  {'feature':<22}{'test':<10}{'value':>10}{'threshold':>11}  drifted")
        for row in d["features"]:
            lines.append(f"  {row['name'][:21]:<22}{row['test']:<10}{_num(row['value']):>10}{_num(row['threshold']):>11}  "
                         + ("YES" if row["drifted"] else "-"))
        p = d["prediction"]
        lines.append(f"  prediction: {p.get('status')}" + (", drifted" if p.get("drifted") else ""))
    perf = d["performance"]
    if perf is None:
        lines.append("  performance: no outcomes logged in this window (Deployment.log_outcomes)")
    else:
        shown = ", ".join(f"{m['name']} {_num(m['value'])} [{_num(m['low'])}, {_num(m['high'])}]" for m in perf["metrics"])
        lines.append(f"  performance on {perf['rows']} labelled rows: {shown}")
    return "\n".join(lines)


def _num(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.4g}"


# -- Prometheus ---------------------------------------------------------------------------------------
HELP = {
    "deploykit_drift_value": "Drift statistic of a feature over the last monitored window",
    "deploykit_drift_threshold": "Calibrated threshold of the drift statistic at the window's size",
    "deploykit_drift_detected": "1 when the feature drifted in the last monitored window",
    "deploykit_drift_verdict": "1 when the last monitored window's verdict is drift",
    "deploykit_prediction_share": "Share of each predicted class in the last monitored window",
}


def prometheus(d: dict, drift: dict) -> str:
    base = {"name": d["name"] or "", "version": d["version"] or ""}
    series: dict[str, list[str]] = {name: [] for name in HELP}
    features = [(f["name"], f) for f in drift["features"]]
    if drift.get("prediction") and drift["prediction"].get("status") == "ok":
        features.append(("(prediction)", drift["prediction"]))
    for name, feature in features:
        for test in feature["tests"]:
            labels = {**base, "feature": name, "test": test["test"]}
            if test["value"] is not None:
                series["deploykit_drift_value"].append(_line("deploykit_drift_value", labels, test["value"]))
            series["deploykit_drift_threshold"].append(_line("deploykit_drift_threshold", labels, test["threshold"]))
        series["deploykit_drift_detected"].append(
            _line("deploykit_drift_detected", {**base, "feature": name}, int(feature["drifted"])))
    series["deploykit_drift_verdict"].append(_line("deploykit_drift_verdict", base, int(d["verdict"]["drift"])))
    shares = (d["prediction"] or {}).get("class_shares")
    if shares:
        for label, share in zip(shares["classes"], shares["live"]):
            series["deploykit_prediction_share"].append(_line("deploykit_prediction_share", {**base, "class": label}, share))
    out = []
    for name, lines in series.items():
        if lines:
            out += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge", *lines]
    return "\n".join(out) + "\n"


def _line(metric: str, labels: dict, value) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    if isinstance(value, float) and math.isinf(value):
        shown = "+Inf"
    else:
        shown = repr(float(value)) if isinstance(value, float) else str(value)
    return f"{metric}{{{inner}}} {shown}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- HTML ---------------------------------------------------------------------------------------------
def html(report) -> str:
    d = report.to_dict()
    features = [dict(f, chart=_bars(f["shares"]), tests=f["tests"]) for f in report.drift["features"]]
    prediction = report.drift.get("prediction")
    prediction_chart = _bars(prediction["shares"]) if prediction and prediction.get("shares") else None
    perf = d["performance"]
    timeline = _timeline(perf["over_time"], perf["metrics"][0]["name"]) if perf and perf["over_time"] else None
    return render("display/monitor.html.j2", d=d, features=features, prediction_chart=prediction_chart,
                  timeline=timeline, css=read("display/monitor.css"), num=_num)


def _bars(shares: dict | None) -> dict | None:
    """Paired bars (reference, live) per bin, in SVG coordinates."""
    if not shares:
        return None
    bins = shares["bins"]
    top = max(max(shares["reference"], default=0), max(shares["live"], default=0)) or 1.0
    slot = (CHART_W - 2 * PAD) / max(len(bins), 1)
    bars = []
    for i, (label, ref, live) in enumerate(zip(bins, shares["reference"], shares["live"])):
        x = PAD + i * slot
        h_ref, h_live = (CHART_H - PAD) * ref / top, (CHART_H - PAD) * live / top
        bars.append({"label": label, "x_ref": x + slot * 0.1, "x_live": x + slot * 0.5, "w": slot * 0.4,
                     "y_ref": CHART_H - h_ref, "h_ref": h_ref, "y_live": CHART_H - h_live, "h_live": h_live,
                     "ref": ref, "live": live})
    return {"width": CHART_W, "height": CHART_H + 4, "bars": bars}


def _timeline(buckets: list[dict], metric: str) -> dict:
    """The first metric per time slice, with its interval, as points and whiskers."""
    points = []
    n = len(buckets)
    for i, bucket in enumerate(buckets):
        m = next(x for x in bucket["metrics"] if x["name"] == metric)
        if m["value"] is None:
            continue
        points.append({"x": PAD + (CHART_W - 2 * PAD) * (i + 0.5) / n, "value": m["value"], "low": m["low"],
                       "high": m["high"], "rows": bucket["rows"], "label": _clock(bucket["start"])})
    values = [v for p in points for v in (p["low"], p["high"], p["value"]) if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    span = (high - low) or 1.0

    def y(v):
        return CHART_H - (CHART_H - PAD) * ((v if v is not None else low) - low) / span

    for p in points:
        p.update(y=y(p["value"]), y_low=y(p["low"]), y_high=y(p["high"]))
    path = " ".join(f"{'M' if i == 0 else 'L'}{p['x']:.1f},{p['y']:.1f}" for i, p in enumerate(points))
    return {"metric": metric, "points": points, "path": path, "width": CHART_W, "height": CHART_H + 4,
            "low": low, "high": high}


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%m-%d %H:%M")
