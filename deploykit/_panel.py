"""``deploykit.DeployPanel``: deploy from a form, watch each stage, then try the live service.

A front end only. It reads the form, calls :func:`deploykit.deploy` in a background thread with a
``progress`` listener (so the kernel stays responsive and Cancel can interrupt), and draws what the
events and the returned :class:`~deploykit.Deployment` say. Markup lives in
``templates/display/panel_*.html.j2`` and ``panel.css``; ipywidgets is imported when a panel is made.
Every widget the user touches carries a stable ``dk-...`` CSS class (tests and docs select on them).
"""

from __future__ import annotations

import inspect
import re
import threading
import time
import traceback
from typing import Any, Callable

from . import _targets
from ._panel_experiment import ExperimentControls
from ._panel_monitor import MonitorControls
from ._templates import read, render

#: The stages the panel lays out before a deploy starts, in order (a target adds its own before "start");
#: others (the explainer, a new deployment's front, retiring the old version) are shown as they happen.
PLAN = ("capture", "parity", "card", "bento", "start", "healthy", "live")
LABELS = {"bento": "package", "healthy": "healthy", "serialise": "serialise", "explainer": "explainer"}
TOP_K = 6


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - the notebook extra installs it
        from .exceptions import ConfigError

        raise ConfigError("DeployPanel needs ipywidgets 8: pip install 'deploykit[notebook]'") from None
    return ipywidgets


def _package_options() -> set[str]:
    """Keywords :func:`deploykit.package` accepts; the card fields appear only where the core has them."""
    from ._package import package

    return set(inspect.signature(package).parameters)


class Stages:
    """Stage states drawn from progress events: pending → running → done | failed | cancelled | skipped."""

    def __init__(self, plan: list[str]) -> None:
        self.rows: dict[str, dict] = {name: self._row(name) for name in plan}
        self.last: str | None = None

    @staticmethod
    def _row(name: str) -> dict:
        return {"name": name, "label": LABELS.get(name, name), "state": "pending", "detail": "", "seconds": None, "t0": None}

    def on_event(self, event: dict) -> None:
        name = event.get("stage")
        if name is None:
            return
        if name not in self.rows:
            self._insert_after(self.last, name)
        row = self.rows[name]
        row["detail"] = event.get("detail") or row["detail"]
        if event["state"] == "start":
            row.update(state="running", t0=time.perf_counter(), seconds=None)
            self.last = name
        else:
            row.update(state=event["state"], seconds=event.get("seconds"))

    def _insert_after(self, anchor: str | None, name: str) -> None:
        items = list(self.rows.items())
        at = [key for key, _ in items].index(anchor) + 1 if anchor in self.rows else 0
        items.insert(at, (name, self._row(name)))
        self.rows = dict(items)

    def finish(self, outcome: str) -> None:
        """After the deploy: a running stage was cancelled or failed; a stage never reached was skipped."""
        for row in self.rows.values():
            if row["state"] == "running":
                row.update(state=outcome, seconds=self._elapsed(row))
            elif row["state"] == "pending" and outcome == "done":
                row["state"] = "skipped"

    @staticmethod
    def _elapsed(row: dict) -> float | None:
        return time.perf_counter() - row["t0"] if row["t0"] is not None else None

    def state(self, name: str) -> str:
        return self.rows[name]["state"]

    def view(self) -> list[dict]:
        shown = []
        for row in self.rows.values():
            seconds = self._elapsed(row) if row["state"] == "running" else row["seconds"]
            shown.append({**row, "time": "" if seconds is None else f"{seconds:.1f} s"})
        return shown


def waterfall(explanation: Any, row: int = 0, k: int = TOP_K) -> dict:
    """Bars of a SHAP waterfall: base value, the ``k`` largest contributions (the rest summed), output."""
    values = list(zip(explanation.feature_names, explanation.values[row].tolist()))
    values.sort(key=lambda item: -abs(item[1]))
    shown, rest = values[:k], values[k:]
    if rest:
        shown.append((f"{len(rest)} other features", sum(v for _, v in rest)))
    base = float(explanation.base_values[row])
    points, cumulative = [base], base
    steps = []
    for name, value in shown:
        steps.append((name, value, cumulative))
        cumulative += value
        points.append(cumulative)
    low, high = min(points), max(points)
    span = (high - low) or 1.0

    def at(x: float) -> float:
        return 100 * (x - low) / span

    bars = [{"name": name, "value": value, "sign": "pos" if value >= 0 else "neg",
             "left": at(min(start, start + value)), "width": max(at(start + abs(value)) - at(start), 0.4)}
            for name, value, start in steps]
    label = explanation.classes[row] if explanation.classes else None
    return {"bars": bars, "base": base, "output": float(explanation.outputs[row]), "base_at": at(base),
            "output_at": at(float(explanation.outputs[row])), "kind": explanation.output, "label": label}


class _Input:
    """One field of the try-it form: its widget and how to read a JSON value from it."""

    def __init__(self, name: str, widget: Any, read_value: Callable[[], Any]) -> None:
        self.name, self.widget, self.read = name, widget, read_value


def _css_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _types(prop: dict) -> tuple[str | None, bool]:
    kind = prop.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    nullable = "null" in kinds or None in prop.get("enum", [])
    return next((k for k in kinds if k not in (None, "null")), None), nullable


def _input_for(w, name: str, prop: dict, default: Any) -> _Input:
    """A dropdown for an enum, a number field, a checkbox for a boolean, a text field otherwise."""
    kind, nullable = _types(prop)
    observed = prop.get("x-observed-range")
    tip = f"{prop.get('description', '')}" + (f"; observed {observed[0]} … {observed[1]}" if observed else "")
    common = {"description": name, "tooltip": tip, "style": {"description_width": "120px"},
              "layout": w.Layout(width="290px")}
    if "enum" in prop:
        options = [("(missing)" if v is None else str(v), v) for v in prop["enum"]]
        value = default if default in prop["enum"] else prop["enum"][0]
        widget = w.Dropdown(options=options, value=value, **common)
        return _Input(name, widget.add_class(f"dk-field-{_css_name(name)}"), lambda: widget.value)
    if kind == "boolean":
        widget = w.Checkbox(value=bool(default), indent=False, description=name, tooltip=tip)
        return _Input(name, widget.add_class(f"dk-field-{_css_name(name)}"), lambda: widget.value)
    if kind in ("integer", "number"):
        number = (w.IntText if kind == "integer" else w.FloatText)(value=default if default is not None else 0, **common)
        number.add_class(f"dk-field-{_css_name(name)}")
        if not nullable:
            return _Input(name, number, lambda: number.value)
        missing = w.Checkbox(value=default is None, indent=False, description="missing",
                             layout=w.Layout(width="90px")).add_class("dk-missing")
        number.disabled = missing.value
        missing.observe(lambda change: setattr(number, "disabled", change["new"]), "value")
        box = w.HBox([number, missing])
        return _Input(name, box, lambda: None if missing.value else number.value)
    widget = w.Text(value="" if default is None else str(default), **common)
    return _Input(name, widget.add_class(f"dk-field-{_css_name(name)}"),
                  lambda: None if nullable and widget.value == "" else widget.value)


def _error_html(exc: BaseException) -> str:
    from .exceptions import DeployKitError

    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    ours = isinstance(exc, DeployKitError)
    more = "\n".join(lines[1:]) if ours else "".join(traceback.format_exception(exc))
    findings = getattr(exc, "findings", None) or []  # CardValidationError: what to fill, field by field
    return render("display/panel_error.html.j2", kind=type(exc).__name__, headline=lines[0], more=more, findings=findings)


class DeployPanel:
    """A deploy form with live stage progress, a log, Cancel, and a try-it form and a Monitor view once
    the model is live.

    Display it as the last expression of a cell (or with ``%deploy --panel``). The form sets the name,
    target, explanations, sensitive features, model card fields and validation profile; Deploy runs
    :func:`deploykit.deploy` in a background thread. Errors appear inside the panel.

    Parameters
    ----------
    model : fitted estimator
    X_train, y_train, X_test, y_test
        As for :func:`deploykit.package`. The try-it form starts from the first held-out row.
    name : str, optional
        The form's initial deployment name.
    target : {"local", "docker"}
        The form's initial target.

    Attributes
    ----------
    deployment : Deployment or None
        The live deployment, once Deploy has finished.
    error : BaseException or None
        What the last action raised, as shown in the panel.

    Examples
    --------
    >>> panel = deploykit.DeployPanel(model, X_train, y_train, X_test, y_test, name="churn")  # doctest: +SKIP
    >>> panel                                                                                 # doctest: +SKIP
    """

    def __init__(self, model: Any, X_train: Any, y_train: Any = None, X_test: Any = None, y_test: Any = None,
                 *, name: str | None = None, target: str = "local") -> None:
        self.model, self.X_train, self.y_train, self.X_test, self.y_test = model, X_train, y_train, X_test, y_test
        self.deployment = None
        self.error: BaseException | None = None
        self.stages = Stages([])
        self.log_lines: list[str] = []
        self.inputs: list[_Input] = []
        self._options = _package_options()
        self._cancel = threading.Event()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._w = _ipywidgets()
        self._build(name or "model", target)

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self, name: str, target: str) -> None:
        w = self._w
        wide = {"style": {"description_width": "120px"}, "layout": w.Layout(width="395px")}
        self.name = w.Text(value=name, description="name", placeholder="e.g. churn", **wide).add_class("dk-name")
        self.target = w.Dropdown(options=_targets.names(), value=target, description="target", **wide).add_class("dk-target")
        self.explain = w.Checkbox(value=True, description="serve SHAP explanations", indent=True,
                                  layout=w.Layout(width="395px")).add_class("dk-explain")
        card_left, card_right = self._card_form(wide)
        self.experiment = ExperimentControls(w, wide, self._guarded)
        self.experiment.on_change = self._on_experiment_change
        self.monitor = MonitorControls(w, self._guarded)
        form = w.HBox([w.VBox([self.name, self.target, self.explain, *self.experiment.fields, *card_left]),
                       w.VBox(card_right)]).add_class("dk-form")
        self.deploy_button = w.Button(description="Deploy", button_style="primary", icon="rocket").add_class("dk-deploy")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True).add_class("dk-cancel")
        self.stop_button = w.Button(description="Stop service", icon="power-off", disabled=True).add_class("dk-stop")
        self.deploy_button.on_click(self._guarded(self._on_deploy))
        self.cancel_button.on_click(self._guarded(self._on_cancel))
        self.stop_button.on_click(self._guarded(self._on_stop))
        self.status = w.HTML(render("display/panel_status.html.j2", state="ready", text="fill the form and press Deploy")).add_class("dk-status")
        self.stage_view = w.HTML().add_class("dk-stages")
        self.log_view = w.HTML().add_class("dk-log")
        self.error_box = w.HTML().add_class("dk-error")
        self.endpoint = w.HTML().add_class("dk-endpoint")
        self.tryit = w.VBox().add_class("dk-tryit")
        self.predict_button = w.Button(description="Predict", button_style="success", icon="play").add_class("dk-predict")
        self.predict_button.on_click(self._guarded(self._on_predict))
        self.prediction = w.HTML().add_class("dk-prediction")
        self.chart = w.HTML().add_class("dk-chart")
        self.card_view = w.HTML().add_class("dk-card-preview")
        self.live = w.VBox([self.endpoint, self.experiment.bar,
                            w.HBox([w.VBox([self.tryit, self.predict_button]).add_class("dk-tryit-box"),
                                    w.VBox([self.prediction, self.chart]).add_class("dk-result")]),
                            self.monitor.box, self.card_view], layout=w.Layout(display="none")).add_class("dk-live")
        head = w.HTML(render("display/panel_head.html.j2", css=read("display/style.css") + read("display/panel.css"),
                             model=type(self.model).__name__, summary=self._data_summary())).add_class("dk-head")
        buttons = w.HBox([self.deploy_button, self.cancel_button, self.stop_button, self.status]).add_class("dk-buttons")
        progress = w.HBox([self.stage_view, self.log_view]).add_class("dk-progress")
        self.widget = w.VBox([head, form, buttons, self.error_box, progress, self.live]).add_class("dk-panel")
        self._show_error(None)

    def _card_form(self, wide: dict) -> tuple[list, list]:
        """Profile (left column), sensitive features and card fields (right): those this deploykit's core accepts."""
        w, left, fields = self._w, [], []
        tall = {**wide, "layout": w.Layout(width="395px", height="54px")}
        columns = list(getattr(self.X_test, "columns", []))
        if "sensitive_features" in self._options and columns and self.y_test is not None:
            self.sensitive = w.SelectMultiple(options=columns, rows=min(4, len(columns)), description="sensitive features",
                                              tooltip="group metrics in the model card (ctrl-click for several)", **wide)
            fields.append(self.sensitive.add_class("dk-sensitive"))
        if "card" in self._options:
            self.intended_use = w.Textarea(description="intended use", placeholder="what the model is for, one per line", **tall)
            self.owners = w.Text(description="owners", placeholder="names or teams, comma-separated", **wide)
            self.limitations = w.Textarea(description="limitations", placeholder="known weak spots, one per line", **tall)
            fields += [self.intended_use.add_class("dk-intended-use"), self.owners.add_class("dk-owners"),
                       self.limitations.add_class("dk-limitations")]
        if "profile" in self._options:
            from ._card import PROFILES

            self.profile = w.Dropdown(options=[("none (do not gate)", ""), *((p, p) for p in PROFILES)], value="",
                                      description="card profile", tooltip="refuse to deploy while the card has errors under it", **wide)
            left.append(self.profile.add_class("dk-profile"))
        return left, fields

    def _data_summary(self) -> str:
        train = f"{len(self.X_train):,} training rows" if hasattr(self.X_train, "__len__") else "training rows"
        test = f" · {len(self.X_test):,} held-out rows" if self.X_test is not None else ""
        return train + test

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)  # the VBox's own repr would print every child widget
        return bundle

    def __repr__(self) -> str:
        live = f" · live at {self.deployment.url}" if self.deployment and not self.deployment.stopped else ""
        return f"<DeployPanel {type(self.model).__name__} · {self.name.value}{live}>"

    # -- reading the form -----------------------------------------------------------------------------
    def deploy_kwargs(self) -> dict:
        """The keyword arguments Deploy passes to :func:`deploykit.deploy`, read from the form."""
        kwargs = {"name": self.name.value.strip(), "target": self.target.value, "X_train": self.X_train,
                  "explain": self.explain.value}
        for key in ("y_train", "X_test", "y_test"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        if getattr(self, "sensitive", None) is not None and self.sensitive.value:
            kwargs["sensitive_features"] = list(self.sensitive.value)
        if hasattr(self, "intended_use"):
            card = {"intended_use": _lines(self.intended_use.value), "owners": _items(self.owners.value, ","),
                    "limitations": _lines(self.limitations.value)}
            if any(card.values()):
                kwargs["card"] = {key: value for key, value in card.items() if value}
        if getattr(self, "profile", None) is not None and self.profile.value:
            kwargs["profile"] = self.profile.value
        return {**kwargs, **self.experiment.deploy_kwargs()}

    # -- actions --------------------------------------------------------------------------------------
    def _guarded(self, handler: Callable[[], None]) -> Callable[[Any], None]:
        """A click handler whose errors land in the panel's error box, not in the browser console."""

        def on_click(_button: Any = None) -> None:
            try:
                handler()
            except Exception as exc:  # shown to the user; nothing is swallowed silently
                self._show_error(exc)

        return on_click

    def deploy(self) -> None:
        """What the Deploy button does: start :func:`deploykit.deploy` in a background thread."""
        self._guarded(self._on_deploy)()

    def cancel(self) -> None:
        """What the Cancel button does: the deploy stops at its next step, leaving any previous version serving."""
        self._on_cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background deploy ends; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_deploy(self) -> None:
        if self.running:
            return
        kwargs = self.deploy_kwargs()
        plan = [s for s in PLAN if s != "card" or "card" in self._options]
        at = plan.index("start")
        plan[at:at] = _targets.get(kwargs["target"]).stages
        with self._lock:
            self.stages, self.log_lines, self.error = Stages(plan), [], None
            self._cancel.clear()
        self._show_error(None)
        self._set_running(True, f"deploying {kwargs['name']} ({kwargs['target']}) …")
        self._thread = threading.Thread(target=self._work, args=(kwargs,), name="deploykit-panel", daemon=True)
        self._thread.start()

    def _work(self, kwargs: dict) -> None:
        from ._deploy import deploy

        done = threading.Event()
        threading.Thread(target=self._tick, args=(done,), daemon=True).start()
        started = time.perf_counter()
        try:
            dep = deploy(self.model, verbose=False, progress=self._on_progress, **kwargs)
        except KeyboardInterrupt:
            self._finish("cancelled", "cancelled; any previous version keeps serving")
        except Exception as exc:
            self._finish("failed", f"failed after {time.perf_counter() - started:.1f} s")
            self._show_error(exc)
        else:
            self.deployment = dep
            self._finish("done", f"live · {dep.name} v{dep.version} in {time.perf_counter() - started:.1f} s", state="live")
            try:
                self._show_live(dep)
            except Exception as exc:
                self._show_error(exc)
        finally:
            done.set()

    def _tick(self, done: threading.Event) -> None:
        while not done.wait(0.5):
            self._render_progress()

    def _on_progress(self, event: dict) -> None:
        if self._cancel.is_set():
            raise KeyboardInterrupt("cancelled from the deploy panel")
        if "heartbeat" in event:
            return
        with self._lock:
            if "log" in event:
                self.log_lines.append(str(event["log"]))
            else:
                self.stages.on_event(event)
                if event["state"] != "start":
                    seconds = event.get("seconds") or 0.0
                    self.log_lines.append(f"{event['stage']}: {event.get('detail') or ''} … {event['state']} ({seconds:.1f} s)")
        self._render_progress()

    def _on_cancel(self) -> None:
        if self.running:
            self._cancel.set()
            self.cancel_button.disabled = True
            self.status.value = render("display/panel_status.html.j2", state="cancelling", text="cancelling at the next step …")

    def _on_stop(self) -> None:
        if self.deployment is not None:
            self.deployment.stop()
            self.monitor.show(self.deployment)
            self.live.layout.display = "none"
            self.stop_button.disabled = True
            self.status.value = render("display/panel_status.html.j2", state="stopped",
                                       text=f"stopped {self.deployment.name} v{self.deployment.version}")

    def _on_predict(self) -> None:
        dep = self.deployment
        if dep is None or dep.stopped:
            from .exceptions import DeploymentError

            raise DeploymentError("nothing is live: press Deploy first")
        self._show_error(None)
        row = {field.name: field.read() for field in self.inputs}
        label = dep.predict([row])[0]
        proba = dep.predict_proba([row])[0].tolist() if dep.classes else None
        self.prediction.value = render("display/panel_prediction.html.j2", label=_plain(label), proba=proba,
                                       classes=dep.classes or [], task=dep.package.manifest.get("task", ""))
        if dep.package.manifest.get("explainer"):
            self.chart.value = render("display/panel_chart.html.j2", w=waterfall(dep.explain([row])))
        else:
            self.chart.value = render("display/panel_chart.html.j2", w=None)

    # -- drawing --------------------------------------------------------------------------------------
    def _set_running(self, running: bool, text: str, state: str = "running") -> None:
        self.deploy_button.disabled = running
        self.cancel_button.disabled = not running
        self.stop_button.disabled = running or self.deployment is None or self.deployment.stopped
        self.status.value = render("display/panel_status.html.j2", state=state, text=text)
        if running:
            self.live.layout.display = "none"
        self._render_progress()

    def _finish(self, outcome: str, text: str, state: str | None = None) -> None:
        with self._lock:
            self.stages.finish(outcome)
        self._set_running(False, text, state or outcome)
        if outcome != "done" and self.deployment is not None and not self.deployment.stopped:
            self.live.layout.display = ""  # a failed or cancelled redeploy leaves the previous version serving

    def _render_progress(self) -> None:
        with self._lock:
            stages = self.stages.view()
            lines = self.log_lines[-300:]
        self.stage_view.value = render("display/panel_stages.html.j2", stages=stages)
        self.log_view.value = render("display/panel_log.html.j2", lines=lines)

    def _show_error(self, exc: BaseException | None) -> None:
        self.error = exc
        self.error_box.value = "" if exc is None else _error_html(exc)
        self.error_box.layout.display = "none" if exc is None else ""

    def _show_live(self, dep: Any) -> None:
        self.endpoint.value = render("display/panel_endpoint.html.j2", dep=dep)
        self.inputs = self._tryit_inputs(dep.schema())
        self.tryit.children = [field.widget for field in self.inputs]
        self.prediction.value, self.chart.value = "", ""
        self.card_view.value = self._card_html(dep)
        self.experiment.show(dep)
        self.monitor.show(dep)
        self.live.layout.display = ""
        self.stop_button.disabled = False

    def _on_experiment_change(self, dep: Any) -> None:
        """After a promotion or a rollback from the panel: what is live now."""
        self.deployment = dep
        self.monitor.show(dep)
        self.endpoint.value = render("display/panel_endpoint.html.j2", dep=dep)
        self.status.value = render("display/panel_status.html.j2", state="live", text=f"live · {dep.name} v{dep.version}")

    def _tryit_inputs(self, schema: dict) -> list[_Input]:
        from ._schema import as_frame, records

        sample = self.X_test if self.X_test is not None else self.X_train
        frame = as_frame(sample, what="X_test" if self.X_test is not None else "X_train")
        first = records(frame.iloc[:1])[0] if len(frame) else {}
        return [_input_for(self._w, name, prop, first.get(name)) for name, prop in schema["properties"].items()]

    def _card_html(self, dep: Any) -> str:
        card = _card_of(dep)
        if card is None:
            return ""
        profile = getattr(self, "profile", None)
        profile = (profile.value if profile is not None else None) or card.profile
        findings = card.validate(profile)
        errors = [f for f in findings if f.severity == "error"]
        return render("display/panel_card.html.j2", card_html=card._repr_html_(), profile=profile,
                      errors=errors, warnings=[f for f in findings if f.severity != "error"])


def _card_of(dep: Any):
    """The deployment's model card, or None where this deploykit (or this package) has none."""
    for owner in (dep, dep.package):
        if "card" in dir(type(owner)):
            try:
                return owner.card
            except Exception:  # an unreadable card is reported by the card's own commands, not here
                return None
    return None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _items(text: str, sep: str) -> list[str]:
    return [item.strip() for item in text.split(sep) if item.strip()]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value

