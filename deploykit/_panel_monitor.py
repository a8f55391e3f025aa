"""The deploy panel's Monitor view: pick a window (the last rows, or a duration back from now), press
Refresh, read the verdict at a glance and the full report below it. A front end only: it reads the
window from its fields and calls :meth:`Deployment.monitor`, then shows the report's own HTML."""

from __future__ import annotations

from typing import Any, Callable

from ._templates import render

WINDOW_KINDS = [("last rows", "rows"), ("last duration", "duration")]


class MonitorControls:
    """The window fields, the Refresh button, the verdict line and the report of a live deployment."""

    def __init__(self, w, guarded: Callable) -> None:
        def narrow() -> dict:  # a Layout of its own per field: one is hidden while the other shows
            return {"style": {"description_width": "60px"}, "layout": w.Layout(width="200px")}

        self.by = w.ToggleButtons(options=WINDOW_KINDS, value="rows", tooltips=[
            "the last N captured rows", "what was captured in the last 90s, 15m, 12h, 7d ..."]).add_class("dk-monitor-by")
        self.by.style.button_width = "100px"
        self.rows = w.BoundedIntText(value=1000, min=1, max=10**9, description="rows", **narrow()).add_class("dk-monitor-rows")
        self.duration = w.Text(value="1h", description="last", placeholder="90s, 15m, 12h, 7d", **narrow())
        self.duration.add_class("dk-monitor-duration")
        self.duration.layout.display = "none"
        self.by.observe(lambda change: self._show_field(change["new"]), "value")
        self.refresh_button = w.Button(description="Refresh", icon="refresh").add_class("dk-monitor-refresh")
        self.refresh_button.on_click(guarded(self.refresh))
        self.verdict = w.HTML(_verdict_html(None)).add_class("dk-monitor-verdict")
        self.view = w.HTML().add_class("dk-monitor-report")
        self.box = w.VBox([w.HTML("<b>Monitor</b>"),
                           w.HBox([self.by, self.rows, self.duration, self.refresh_button, self.verdict]).add_class("dk-monitor-bar"),
                           self.view], layout=w.Layout(display="none")).add_class("dk-monitor-box")
        self.deployment: Any = None
        self.report: Any = None

    def window(self) -> int | str:
        """What Refresh passes as ``Deployment.monitor(window=...)``: a row count or a duration."""
        return self.rows.value if self.by.value == "rows" else self.duration.value.strip()

    def show(self, deployment: Any) -> None:
        """Show the view while ``deployment`` is live; a new deployment starts with no report."""
        if deployment is None or getattr(deployment, "name", None) != getattr(self.deployment, "name", None):
            self.report, self.view.value, self.verdict.value = None, "", _verdict_html(None)
        self.deployment = deployment
        live = deployment is not None and not deployment.stopped
        self.box.layout.display = "" if live else "none"
        self.refresh_button.disabled = not live

    def refresh(self) -> None:
        """What Refresh does: the report over the chosen window, its verdict, and its HTML display."""
        self.verdict.value = render("display/panel_monitor.html.j2", state="computing", headline="computing the report …",
                                    detail="")
        try:
            self.report = self.deployment.monitor(window=self.window())
        except BaseException:
            self.verdict.value = _verdict_html(self.report)
            raise
        self.verdict.value = _verdict_html(self.report)
        self.view.value = self.report._repr_html_()

    def _show_field(self, by: str) -> None:
        self.rows.layout.display = "" if by == "rows" else "none"
        self.duration.layout.display = "" if by == "duration" else "none"


def _verdict_html(report: Any) -> str:
    """One line: drift / no drift / insufficient data, the window, and the first performance metric."""
    if report is None:
        return render("display/panel_monitor.html.j2", state="none", headline="no report yet",
                      detail="send some traffic, then press Refresh")
    d = report.to_dict()
    if d["status"] != "ok":
        state, headline = "insufficient", "insufficient data"
    else:
        state, headline = ("drift", "DRIFT") if d["verdict"]["drift"] else ("no-drift", "no drift")
    detail = [f"{d['window']['rows']:,} rows"]
    if d["verdict"]["reasons"] and state == "drift":
        detail.append("; ".join(d["verdict"]["reasons"]))
    if d["performance"]:
        m = d["performance"]["metrics"][0]
        detail.append(f"{m['name']} {_num(m['value'])} [{_num(m['low'])}, {_num(m['high'])}] on {d['performance']['rows']:,} labelled rows")
    return render("display/panel_monitor.html.j2", state=state, headline=headline, detail=" · ".join(detail))


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.3g}"
