"""JupyterLab in a real Chromium: run the quickstart, deploy from the panel, use its try-it form.

Follows the proven recipe in RECIPES.md: Debian's Chromium driven by Playwright for Python (never
``playwright install``), JupyterLab on loopback in its own process group with every Jupyter directory
in a temp dir, a copy of the notebook with outputs and widget state stripped. Screenshots of the
panel go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = [pytest.mark.browser, pytest.mark.serve]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01-quickstart.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
RUN_ALL_TIMEOUT = 300_000  # ms: the quickstart trains, packages and serves a model before the panel cell
DEPLOY_TIMEOUT = 300_000


def _require_components() -> None:
    require(os.access(CHROMIUM, os.X_OK), "Chromium", "apt-get install -y chromium (`.ci/run` does)")
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"), ("ipywidgets", "ipywidgets")):
        require(importlib.util.find_spec(module) is not None, package, f"pip install {package} (the test extra has it)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stripped_copy(source: Path, target: Path) -> None:
    """The notebook without outputs or widget state, so nothing stale satisfies the waits."""
    nb = json.loads(source.read_text())
    nb["metadata"].pop("widgets", None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    target.write_text(json.dumps(nb, indent=1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a copy of the quickstart, with its own Jupyter and deploykit homes."""
    _require_components()
    import httpx

    base = tmp_path_factory.mktemp("lab")
    root, jupyter = base / "root", base / "jupyter"
    root.mkdir()
    _stripped_copy(NOTEBOOK, root / NOTEBOOK.name)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(jupyter / "config"), "JUPYTER_DATA_DIR": str(jupyter / "data"),
           "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "workspaces"), "DEPLOYKIT_HOME": str(base / "deploykit"),
           "BENTOML_HOME": str(base / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    for name, values in SETTINGS.items():
        plugin, _, file = name.partition("/")
        path = jupyter / "settings" / plugin / file.replace("/", os.sep)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    log = open(base / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}",
         "--ServerApp.allow_root=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, (base / "jupyterlab.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"JupyterLab did not answer within 120 s:\n{(base / 'jupyterlab.log').read_text()[-3000:]}")
        yield {"url": url, "token": token, "root": root, "env": env, "log": base / "jupyterlab.log"}
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server shuts its kernels down
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        _stop_leftovers(env["DEPLOYKIT_HOME"])


def _stop_leftovers(home: str) -> None:
    """Stop any service the notebook's kernel left running (only those of this test's deploykit home)."""
    import deploykit

    saved = os.environ.get("DEPLOYKIT_HOME")
    os.environ["DEPLOYKIT_HOME"] = home
    try:
        for dep in deploykit.deployments():
            if str(dep.package.path).startswith(home):
                dep.stop()
    finally:
        os.environ["DEPLOYKIT_HOME"] = saved if saved is not None else os.environ.pop("DEPLOYKIT_HOME")


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1300, "height": 1800})
        page = context.new_page()
        page.console_errors = []
        page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def _expected_prediction(contract: str, tenure: int) -> int:
    """What the quickstart's model (deterministic: fixed data and random_state) predicts for the edited row."""
    from deploykit.demo import churn_pipeline, make_churn

    X, y = make_churn(n=2000, seed=0)
    model = churn_pipeline().fit(X[:1600], y[:1600])
    return int(model.predict(X[1600:1601].assign(contract=contract, tenure_months=tenure))[0])


def test_quickstart_panel_deploys_and_predicts_in_jupyterlab(lab, page):
    from playwright.sync_api import expect

    page.goto(f"{lab['url']}/lab/tree/{NOTEBOOK.name}?token={lab['token']}")
    expect(page.locator(".jp-Toolbar-kernelName").first).to_have_text("Python 3 (ipykernel)", timeout=90_000)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached(timeout=90_000)

    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    panel = page.locator(".dk-panel")
    expect(panel).to_be_visible(timeout=RUN_ALL_TIMEOUT)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached(timeout=RUN_ALL_TIMEOUT)
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] >> text=Traceback").count() == 0
    expect(panel.locator(".dk-status")).to_contain_text("fill the form and press Deploy")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(ARTIFACTS / "panel-form.png"))

    panel.locator(".dk-name input").fill("Churn Browser")  # not a usable name: the error shows in the panel
    panel.locator("button.dk-deploy").click()
    expect(panel.locator(".dk-error .dk-error-box")).to_contain_text("is not usable", timeout=30_000)
    expect(panel.locator(".dk-error .dk-error-box")).to_contain_text("'churn-browser'")
    panel.screenshot(path=str(ARTIFACTS / "panel-error.png"))

    panel.locator(".dk-name input").fill("churn-browser")
    if panel.locator(".dk-intended-use").count():
        panel.locator(".dk-intended-use textarea").fill("rank customers for retention offers")
        panel.locator(".dk-owners input").fill("Retention analytics")
        panel.locator(".dk-sensitive select").select_option("age")
    panel.locator("button.dk-deploy").click()

    expect(panel.locator(".dk-stage-running").first).to_be_visible(timeout=60_000)
    expect(panel.locator(".dk-error-box")).to_have_count(0)
    expect(panel.locator(".dk-log .dk-log-lines")).to_contain_text("capture", timeout=60_000)
    panel.screenshot(path=str(ARTIFACTS / "panel-progress.png"))
    expect(panel.locator(".dk-state-live")).to_be_visible(timeout=DEPLOY_TIMEOUT)
    assert panel.locator(".dk-error-box").count() == 0
    for stage in ("capture", "parity", "bento", "start", "healthy", "live"):
        expect(panel.locator(f".dk-stage[data-stage='{stage}']")).to_have_attribute("data-state", "done")
    expect(panel.locator(".dk-endpoint a.dk-url")).to_contain_text("http://127.0.0.1:")

    panel.locator(".dk-field-contract select").select_option("month-to-month")
    tenure = panel.locator(".dk-field-tenure_months input")
    tenure.fill("2")
    tenure.press("Enter")
    panel.locator("button.dk-predict").click()
    value = panel.locator(".dk-prediction .dk-prediction-value")
    expect(value).to_have_text(str(_expected_prediction("month-to-month", 2)), timeout=30_000)
    expect(panel.locator(".dk-prediction")).to_contain_text("P(1)")
    expect(panel.locator(".dk-chart .dk-waterfall")).to_be_visible(timeout=30_000)  # drawn once /explain answers, after the prediction
    assert panel.locator(".dk-chart .dk-wf-bar").count() >= 3
    if panel.locator(".dk-intended-use").count():
        expect(panel.locator(".dk-card-preview .dk-card-status")).to_be_visible()
    panel.locator("button.dk-monitor-refresh").click()  # two captured rows: too few for drift
    expect(panel.locator(".dk-monitor-verdict [data-verdict='insufficient']")).to_be_visible(timeout=30_000)
    expect(panel.locator(".dk-monitor-report .dk-monitor")).to_contain_text("insufficient data")
    panel.screenshot(path=str(ARTIFACTS / "panel-live.png"))

    panel.locator("button.dk-stop").click()
    expect(panel.locator(".dk-state-stopped")).to_be_visible(timeout=30_000)
    assert not [e for e in page.console_errors if "dk-" in e or "widget" in e.lower()], page.console_errors
