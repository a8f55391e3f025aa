"""``/predict`` and ``/predict_proba`` answered past BentoML's per-request middlewares (issue 15): the
dispatch itself on a small Starlette app, then a real server answering exactly as BentoML's whole path
does, counted in BentoML's /metrics, and saying in its log which way it took."""

import json
import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import deploykit
from deploykit._runtime.hotroutes import HotRoutes, find_middleware


class RunnerTrafficMetricsMiddleware:  # the name HotRoutes looks for; counts what passes through it
    def __init__(self, app) -> None:
        self.app, self._is_setup, self.counts = app, False, []

    async def __call__(self, scope, receive, send) -> None:
        self._is_setup = True
        if scope["type"] == "http":
            self.counts.append(scope["path"])
        await self.app(scope, receive, send)


def _app():
    async def whole(request):
        return PlainTextResponse("whole way")

    return Starlette(routes=[Route(p, whole, methods=["GET", "POST"]) for p in ("/predict", "/predict_proba", "/card")],
                     middleware=[Middleware(RunnerTrafficMetricsMiddleware)])


async def _short(scope, receive, send):
    await PlainTextResponse("short way")(scope, receive, send)


def test_after_the_first_request_the_hot_routes_take_the_short_way_and_are_still_counted():
    app = _app()
    with TestClient(HotRoutes(app, _short, lambda: True)) as client:
        assert client.post("/predict").text == "whole way"  # BentoML's app builds its stack on this one
        assert [client.post(p).text for p in ("/predict", "/predict_proba")] == ["short way"] * 2
        assert client.get("/predict").text == client.post("/card").text == "whole way"  # other methods, other routes
    # the copy around the short way shares the original's metric objects (here its list): every request counted once
    assert find_middleware(app, "RunnerTrafficMetricsMiddleware").counts == [
        "/predict", "/predict", "/predict_proba", "/predict", "/card"]


def test_the_short_way_is_not_taken_when_it_would_skip_something_asked_for():
    with TestClient(HotRoutes(_app(), _short, lambda: False)) as client:
        assert [client.post("/predict").text for _ in range(3)] == ["whole way"] * 3


def test_without_bentomls_metrics_middleware_the_handler_answers_alone():
    async def whole(request):
        return PlainTextResponse("whole way")

    plain = Starlette(routes=[Route("/predict", whole, methods=["POST"])])
    with TestClient(HotRoutes(plain, _short, lambda: True)) as client:
        assert [client.post("/predict").text for _ in range(2)] == ["whole way", "short way"]


BODIES = [
    ("application/json", None),  # the rows, filled in below
    ("application/json", json.dumps({"instances": [{"nope": 1}]})),
    ("application/json", "{not json"),
    ("text/plain", None),
    ("application/json", json.dumps({"instances": []})),
]


@pytest.mark.serve
def test_a_served_version_answers_the_short_way_as_the_whole_way_and_counts_it(tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    from tests.test_batch import _frame

    X = _frame(600, 5)[["usage", "tenure"]]
    y = (X["usage"] > 20).astype(int)
    pkg = deploykit.package(LogisticRegression().fit(X[:400], y[:400]), name="hotroutes", X_train=X[:400],
                            y_train=y[:400], X_test=X[400:], y_test=y[400:], verbose=False)
    assert pkg.manifest.serving.compiled
    rows = json.dumps({"instances": X[400:405].to_dict(orient="records")})
    answers, logs = {}, {}
    # one at a time: two BentoML servers of one BENTOML_HOME share a metrics folder, which a start clears
    for name, switch in (("hot-short", None), ("hot-whole", "0")):
        if switch:
            monkeypatch.setenv("DEPLOYKIT_HOT_ROUTES", switch)
        dep = deploykit.deploy(pkg, name=name, verbose=False)
        monkeypatch.delenv("DEPLOYKIT_HOT_ROUTES", raising=False)
        try:
            with httpx.Client(base_url=dep.handle.upstream, timeout=30) as client:
                client.post("/predict", content=rows, headers={"content-type": "application/json"})  # arms it
                answers[name] = [
                    (r.status_code, r.headers.get("content-type"), r.headers.get("x-deploykit-path"), r.content)
                    for route in ("/predict", "/predict_proba")
                    for media, body in BODIES
                    for r in [client.post(route, content=body or rows, headers={"content-type": media})]]
                metrics = client.get("/metrics").text
            counted = re.findall(r'bentoml_service_request_total\{[^}]*endpoint="/predict_proba"[^}]*\} ([0-9.]+)', metrics)
            assert sum(float(c) for c in counted) == len(BODIES), name
            logs[name] = dep.handle.log_path.read_text()
        finally:
            dep.stop()
    assert answers["hot-short"] == answers["hot-whole"]
    assert [a[0] for a in answers["hot-short"][:5]] == [200, 422, 400, 415, 400]
    assert "answered past BentoML's per-request middlewares" in logs["hot-short"]
    assert "answered past BentoML's per-request middlewares" not in logs["hot-whole"]
