"""The deploy panel's callbacks, driven from Python: the form, Deploy, progress, Cancel, try-it, errors.

The serve tests click the real buttons over a real ``bentoml serve``; the browser test in
tests/browser/ checks the same panel renders and works in JupyterLab.
"""

import html
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

import deploykit
from deploykit._client import Explanation
from deploykit._panel import PLAN, Stages, waterfall

TIMEOUT = 240


@pytest.fixture
def panel(churn, churn_model):
    X_train, X_test, y_train, y_test = churn
    made = []

    def make(name):
        made.append(deploykit.DeployPanel(churn_model, X_train, y_train, X_test, y_test, name=name))
        return made[-1]

    yield make
    for p in made:
        p.cancel()
        p.wait(60)
        if p.deployment is not None:
            p.deployment.stop()


def _wait_for(condition, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- pure parts -----------------------------------------------------------------------------------------
def test_stages_follow_events_and_show_unplanned_ones_in_order():
    stages = Stages(["capture", "parity", "bento", "live"])
    stages.on_event({"stage": "capture", "state": "start", "detail": "Pipeline", "seconds": 0.0})
    assert stages.state("capture") == "running"
    stages.on_event({"stage": "capture", "state": "done", "detail": "Pipeline", "seconds": 1.5})
    stages.on_event({"stage": "serialise", "state": "start", "detail": "skops", "seconds": 0.0})
    names = [row["name"] for row in stages.view()]
    assert names == ["capture", "serialise", "parity", "bento", "live"]
    assert stages.view()[0]["time"] == "1.5 s" and stages.view()[1]["state"] == "running"
    stages.finish("cancelled")
    assert stages.state("serialise") == "cancelled" and stages.state("parity") == "pending"


def test_stages_never_reached_are_skipped_after_success():
    stages = Stages(["capture", "card"])
    stages.on_event({"stage": "capture", "state": "start", "detail": "", "seconds": 0.0})
    stages.on_event({"stage": "capture", "state": "done", "detail": "", "seconds": 0.1})
    stages.finish("done")
    assert stages.state("card") == "skipped"


def test_waterfall_walks_from_base_to_output():
    values = np.array([[0.30, -0.10, 0.05, 0.01, -0.02, 0.004, 0.002, -0.001]])
    exp = Explanation(feature_names=list("abcdefgh"), values=values, base_values=np.array([0.2]),
                      outputs=np.array([0.2 + values.sum()]), output="probability", explainer="tree", classes=[1])
    chart = waterfall(exp, k=3)
    assert [bar["name"] for bar in chart["bars"]] == ["a", "b", "c", "5 other features"]
    assert chart["bars"][-1]["value"] == pytest.approx(values[0, 3:].sum())
    assert chart["base_at"] == pytest.approx(0.0) and max(b["left"] + b["width"] for b in chart["bars"]) <= 100.0001
    assert chart["bars"][0]["sign"] == "pos" and chart["bars"][1]["sign"] == "neg"
    assert chart["label"] == 1 and chart["output"] == pytest.approx(0.2 + values.sum())


def test_form_becomes_deploy_arguments(panel):
    p = panel("form")
    p.name.value, p.target.value, p.explain.value = " churn-form ", "docker", False
    kwargs = p.deploy_kwargs()
    assert kwargs["name"] == "churn-form" and kwargs["target"] == "docker" and kwargs["explain"] is False
    assert {"X_train", "y_train", "X_test", "y_test"} <= set(kwargs)
    assert "card" not in kwargs and "profile" not in kwargs and "sensitive_features" not in kwargs
    assert "strategy" not in kwargs  # replace, the default
    p.experiment.strategy.value, p.experiment.traffic.value = "canary", 0.25
    assert (p.deploy_kwargs()["strategy"], p.deploy_kwargs()["traffic"]) == ("canary", 0.25)
    p.experiment.strategy.value = "shadow"
    assert p.deploy_kwargs()["strategy"] == "shadow" and "traffic" not in p.deploy_kwargs()
    p.experiment.strategy.value = "replace"
    if hasattr(p, "intended_use"):  # the card keywords exist in deploykit.package
        p.sensitive.value = ("age",)
        p.intended_use.value = "rank customers for retention offers\n\nnot for pricing"
        p.owners.value = "Retention team, Data science"
        p.limitations.value = "trained on synthetic data"
        p.profile.value = "internal"
        kwargs = p.deploy_kwargs()
        assert kwargs["sensitive_features"] == ["age"] and kwargs["profile"] == "internal"
        assert kwargs["card"] == {"intended_use": ["rank customers for retention offers", "not for pricing"],
                                  "owners": ["Retention team", "Data science"], "limitations": ["trained on synthetic data"]}


def test_tryit_form_follows_the_schema(panel):
    import ipywidgets as w

    p = panel("schema")
    schema = {"properties": {
        "tenure_months": {"type": "integer"},
        "total_charges": {"type": ["number", "null"]},
        "contract": {"enum": ["month-to-month", "one-year", "two-year"]},
        "internet": {"enum": ["dsl", "fiber", None]},
        "senior": {"type": "boolean"},
        "note": {"type": "string"},
    }}
    inputs = {field.name: field for field in p._tryit_inputs(schema)}
    assert isinstance(inputs["tenure_months"].widget, w.IntText)
    assert isinstance(inputs["contract"].widget, w.Dropdown)
    assert list(inputs["contract"].widget.options) == [("month-to-month", "month-to-month"), ("one-year", "one-year"), ("two-year", "two-year")]
    assert ("(missing)", None) in inputs["internet"].widget.options
    assert isinstance(inputs["senior"].widget, w.Checkbox) and isinstance(inputs["note"].widget, w.Text)
    number, missing = inputs["total_charges"].widget.children
    number.value, missing.value = 12.5, False
    assert inputs["total_charges"].read() == 12.5
    missing.value = True
    assert inputs["total_charges"].read() is None and number.disabled
    first = p.X_test.iloc[0]
    assert inputs["tenure_months"].read() == first["tenure_months"] and inputs["contract"].read() == first["contract"]
    for name, field in inputs.items():
        inner = field.widget.children[0] if isinstance(field.widget, w.HBox) else field.widget
        assert f"dk-field-{name}" in inner._dom_classes


def test_a_bad_name_shows_in_the_panel(panel):
    p = panel("bad")
    p.name.value = "Bad Name"
    p.deploy_button.click()
    assert p.wait(60)
    assert isinstance(p.error, deploykit.ConfigError)
    assert "name 'Bad Name' is not usable" in html.unescape(p.error_box.value) and "dk-error-box" in p.error_box.value
    assert p.error_box.layout.display != "none"
    assert 'data-state="failed"' in p.status.value
    assert not p.deploy_button.disabled and p.cancel_button.disabled


def test_predict_before_deploy_says_what_to_do(panel):
    p = panel("early")
    p.predict_button.click()
    assert isinstance(p.error, deploykit.DeploymentError) and "press Deploy first" in p.error_box.value


def test_widgets_have_stable_selectors(panel):
    p = panel("selectors")
    for widget, cls in [(p.widget, "dk-panel"), (p.name, "dk-name"), (p.target, "dk-target"), (p.explain, "dk-explain"),
                        (p.deploy_button, "dk-deploy"), (p.cancel_button, "dk-cancel"), (p.stop_button, "dk-stop"),
                        (p.stage_view, "dk-stages"), (p.log_view, "dk-log"), (p.error_box, "dk-error"),
                        (p.tryit, "dk-tryit"), (p.predict_button, "dk-predict"), (p.prediction, "dk-prediction"),
                        (p.chart, "dk-chart"), (p.live, "dk-live"), (p.card_view, "dk-card-preview")]:
        assert cls in widget._dom_classes
    assert "application/vnd.jupyter.widget-view+json" in p._repr_mimebundle_()


# -- against a real bentoml serve -----------------------------------------------------------------------
@pytest.mark.serve
def test_deploy_predict_and_stop_from_the_panel(panel, churn, churn_model):
    import ipywidgets as w

    p = panel("panel-live")
    if hasattr(p, "intended_use"):
        p.sensitive.value = ("age",)
        p.intended_use.value = "rank customers for retention offers"
    p.deploy_button.click()
    assert p.running and p.deploy_button.disabled and not p.cancel_button.disabled
    assert p.wait(TIMEOUT), "the deploy did not finish"
    assert p.error is None, p.error_box.value
    planned = [s for s in PLAN if s != "card" or hasattr(p, "intended_use")]
    for stage in planned:
        assert p.stages.state(stage) == "done", (stage, p.stages.view())
        assert f'data-stage="{stage}" data-state="done"' in p.stage_view.value
    assert "live" in p.status.value and "bentoml build" in p.log_view.value

    dep = p.deployment
    assert dep.health()["ready"] and dep.url in p.endpoint.value and p.live.layout.display != "none"
    schema = dep.schema()
    assert [field.name for field in p.inputs] == list(schema["properties"])
    for field in p.inputs:
        prop = schema["properties"][field.name]
        if "enum" in prop:
            assert isinstance(field.widget, w.Dropdown) and list(field.widget.options) == [(str(v), v) for v in prop["enum"]]
        elif prop["type"] == "integer":
            assert isinstance(field.widget, w.IntText)
    assert list(p.tryit.children) == [field.widget for field in p.inputs]

    fields = {field.name: field for field in p.inputs}
    fields["contract"].widget.value = "month-to-month"
    fields["tenure_months"].widget.value = 2
    p.predict_button.click()
    assert p.error is None, p.error_box.value
    row = {name: field.read() for name, field in fields.items()}
    expected = churn_model.predict(p.X_test.iloc[:1].assign(contract="month-to-month", tenure_months=2))[0]
    assert f'class="dk-prediction-value">{expected}<' in p.prediction.value
    assert "P(1)" in p.prediction.value
    assert p.chart.value.count("dk-wf-bar") >= 3 and "base value" in p.chart.value
    top = dep.explain([row]).top(1)[0][0]
    assert f'title="{top}"' in p.chart.value
    if hasattr(p, "intended_use"):
        assert "dk-card-status" in p.card_view.value and "internal" in p.card_view.value

    assert p.monitor.box.layout.display != "none"  # the Monitor view, over what the service captured
    p.monitor.refresh_button.click()
    assert p.error is None, p.error_box.value
    assert p.monitor.report.name == dep.name and p.monitor.report.window["rows"] <= 2  # one /predict, one /predict_proba
    assert 'data-verdict="insufficient"' in p.monitor.verdict.value and "dk-monitor" in p.monitor.view.value

    p.stop_button.click()
    assert dep.stopped and dep.health()["live"] is False and 'data-state="stopped"' in p.status.value
    assert p.monitor.box.layout.display == "none"


@pytest.mark.serve
def test_shadow_compare_and_promote_from_the_panel(panel):
    p = panel("panel-shadow")
    p.deploy_button.click()
    assert p.wait(TIMEOUT) and p.error is None, p.error_box.value
    first = p.deployment
    assert p.experiment.bar.layout.display == "none"  # no candidate: nothing to compare
    p.experiment.strategy.value = "shadow"
    p.deploy_button.click()
    assert p.wait(TIMEOUT) and p.error is None, p.error_box.value
    dep = p.deployment
    assert dep.url == first.url and dep.candidate is not None and p.experiment.bar.layout.display != "none"
    rows = p.X_test.iloc[:3]
    for _ in range(20):
        dep.predict(rows)
    p.experiment.compare_button.click()
    assert p.error is None, p.error_box.value
    assert "shadow experiment" in p.experiment.view.value and "agreement" in p.experiment.view.value
    candidate = dep.candidate
    p.experiment.promote_button.click()
    assert p.error is None, p.error_box.value
    assert p.deployment.version == candidate and p.deployment.candidate is None
    assert p.experiment.bar.layout.display == "none" and f"v{candidate}" in p.status.value


@pytest.mark.serve
def test_cancel_while_waiting_for_health_leaves_nothing_running(panel):
    p = panel("panel-cancel")
    p.deploy_button.click()
    _wait_for(lambda: "healthy" in p.stages.rows and p.stages.state("healthy") == "running" or not p.running,
              what="the healthy stage")
    assert p.running, p.error_box.value
    p.cancel_button.click()
    assert p.wait(60)
    assert p.deployment is None and p.error is None
    assert p.stages.state("healthy") == "cancelled" and p.stages.state("live") == "pending"
    assert 'data-state="cancelled"' in p.status.value and not p.deploy_button.disabled
    assert "panel-cancel" not in [d.name for d in deploykit.deployments()]


@pytest.mark.serve
def test_a_card_profile_error_shows_what_to_fill(panel):
    p = panel("panel-profile")
    if not hasattr(p, "profile"):
        pytest.skip("this deploykit's package() has no profile keyword")
    p.profile.value = "eu-ai-act-high-risk"
    p.deploy_button.click()
    assert p.wait(TIMEOUT)
    assert isinstance(p.error, deploykit.DeployKitError), p.error_box.value
    shown = html.unescape(p.error_box.value)
    assert "eu-ai-act-high-risk" in shown and "intended_use" in shown
    assert "dk-error-findings" in p.error_box.value
    assert p.deployment is None and 'data-state="failed"' in p.status.value


@pytest.fixture
def docker_images():
    """A usable engine and base image (required under CI=true); removes the model images the test built."""
    import os

    from conftest import require
    from deploykit._docker.base import check_base_image, resolve_base_image
    from deploykit._docker.engine import LABEL, available, client

    require(available(), "a Docker engine", "start dockerd (`.ci/run` does)")
    try:
        check_base_image(resolve_base_image())
    except deploykit.DeployKitError as exc:
        require(False, "a Python base image", f"set DEPLOYKIT_BASE_IMAGE ({str(exc).splitlines()[0]})")
    engine = client()
    for image in engine.images.list("deploykit/panel-docker"):  # left by an interrupted run: this test's name
        engine.images.remove(image.id, force=True)
    yield engine
    home = os.environ["DEPLOYKIT_HOME"]
    for image in engine.images.list(filters={"label": f"{LABEL}.role=model"}):
        if image.labels.get(f"{LABEL}.package", "").startswith(home) and image.labels.get(f"{LABEL}.model.name") == "panel-docker":
            engine.images.remove(image.id, force=True)


@pytest.mark.serve
@pytest.mark.docker
def test_docker_target_shows_the_image_stage_and_its_build_log(panel, docker_images):
    p = panel("panel-docker")
    p.target.value = "docker"
    p.deploy_button.click()
    assert p.wait(900), "the docker deploy did not finish"
    assert p.error is None, p.error_box.value
    # a first deploy also makes the deployment's front, after the image and before the version starts
    assert [row["name"] for row in p.stages.view()][-5:] == ["image", "front", "start", "healthy", "live"]
    assert all(p.stages.state(stage) == "done" for stage in ("image", "front", "start", "healthy", "live"))
    assert "base image:" in p.log_view.value and "model image" in p.log_view.value
    dep = p.deployment
    assert dep.target == "docker" and dep.health()["ready"]
    p.predict_button.click()
    assert p.error is None and "dk-prediction-value" in p.prediction.value
    p.stop_button.click()
    assert dep.stopped


def test_magic_opens_the_panel(churn, churn_model):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "deploykit")
    X_train, X_test, y_train, y_test = churn
    shell.user_ns.update(model=churn_model, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    result = shell.run_cell("%deploy --panel model --train X_train y_train --test X_test y_test --name churn-panel")
    assert result.success, result.error_in_exec
    p = result.result
    assert isinstance(p, deploykit.DeployPanel) and p.name.value == "churn-panel" and p.X_test is X_test
    failed = shell.run_cell("%deploy --panel model")
    assert type(failed.error_in_exec).__name__ == "UsageError" and "--panel needs the training data" in str(failed.error_in_exec)
