"""The served HTTP contract, against a really running `bentoml serve` of real packages."""

import httpx
import numpy as np
import pytest

import deploykit
from deploykit._schema import records

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def served(churn_package):
    dep = deploykit.deploy(churn_package, verbose=False)
    yield dep
    dep.stop()


@pytest.fixture(scope="module")
def http(served):
    with httpx.Client(base_url=served.url, timeout=60) as client:
        yield client


def test_predict(served, http, churn_model, churn):
    X_test = churn[1].iloc[:25]
    body = http.post("/predict", json={"instances": records(X_test)}).json()
    assert body["predictions"] == churn_model.predict(X_test).tolist()
    assert body["model"] == {"name": "churn", "version": served.version}
    assert served.predict(X_test).tolist() == churn_model.predict(X_test).tolist()


def test_predict_proba(served, http, churn_model, churn):
    X_test = churn[1].iloc[:25]
    body = http.post("/predict_proba", json={"instances": records(X_test)}).json()
    assert body["classes"] == [0, 1]
    assert np.abs(np.asarray(body["probabilities"]) - churn_model.predict_proba(X_test)).max() <= 1e-9
    assert np.allclose(served.predict_proba(X_test), churn_model.predict_proba(X_test), atol=1e-9)


def test_explain_is_additive_on_original_columns(served, http, churn_model, churn):
    X_test = churn[1].iloc[:10]
    body = http.post("/explain", json={"instances": records(X_test)}).json()
    assert body["feature_names"] == list(X_test.columns)  # not the one-hot expanded ones
    assert body["output"] == "probability"
    values = np.asarray(body["values"])
    assert values.shape == (10, X_test.shape[1])
    assert np.allclose(np.asarray(body["base_values"]) + values.sum(axis=1), body["outputs"], atol=1e-6)
    assert np.allclose(body["outputs"], churn_model.predict_proba(X_test)[:, 1], atol=1e-6)
    explanation = served.explain(X_test.iloc[:1])
    assert explanation.top(1)[0][0] in X_test.columns and "Explanation" in repr(explanation)
    assert "dk-bar" in explanation._repr_html_()


def test_schema_and_infrastructure_endpoints(served, http, churn):
    import jsonschema

    schema = http.get("/schema").json()
    assert schema == served.schema()
    jsonschema.validate(records(churn[1].iloc[:1])[0], schema)
    assert http.get("/livez").status_code == 200 and http.get("/readyz").status_code == 200
    http.post("/predict", json={"instances": records(churn[1].iloc[:1])})
    metrics = http.get("/metrics").text
    assert "# TYPE" in metrics and 'endpoint="/predict"' in metrics
    spec = http.get("/docs.json").json()
    assert {"/predict", "/predict_proba", "/explain", "/schema"} <= set(spec["paths"])
    assert http.get("/").status_code == 200 and "html" in http.get("/").headers["content-type"]


def _row(churn, **changes):
    row = records(churn[1].iloc[:1])[0]
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


BAD = [
    ("missing column", lambda c: {"instances": [_row(c, age=...)]}, 422, "age", "missing column"),
    ("unknown column", lambda c: {"instances": [_row(c, colour="red")]}, 422, "colour", "unknown column"),
    ("wrong type", lambda c: {"instances": [_row(c, tenure_months="ten")]}, 422, "tenure_months", "expected an integer"),
    ("null not allowed", lambda c: {"instances": [_row(c, tenure_months=None)]}, 422, "tenure_months", "null is not allowed"),
    ("unseen category", lambda c: {"instances": [_row(c, contract="lifetime")]}, 422, "contract", "would encode it as all zeros"),
    ("empty batch", lambda c: {"instances": []}, 400, None, "empty"),
    ("oversized batch", lambda c: {"instances": [_row(c)] * 1001}, 413, None, "exceeds the limit of 1000"),
    ("not an object", lambda c: [1, 2], 400, None, "JSON object"),
]


@pytest.mark.parametrize("case, body, status, column, fragment", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("path", ["/predict", "/predict_proba", "/explain"])
def test_bad_input_is_a_4xx_naming_the_problem(http, churn, path, case, body, status, column, fragment):
    response = http.post(path, json=body(churn))
    assert response.status_code == status
    payload = response.json()
    assert set(payload) == {"error", "details"} and fragment in payload["error"]
    if column:
        assert payload["details"][0] == {"row": 0, "column": column, "problem": payload["details"][0]["problem"]}
        assert fragment in payload["details"][0]["problem"]


@pytest.mark.parametrize("raw", [b'{"instances": [', b"\xff\xfe", b""])
def test_malformed_json_is_a_400(http, raw):
    response = http.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_client_raises_request_error_with_details(served, churn):
    with pytest.raises(deploykit.RequestError) as info:
        served.predict([_row(churn, contract="lifetime")])
    assert info.value.status == 422 and info.value.details[0]["column"] == "contract"


def test_deployment_object(served):
    assert served.health() == {"live": True, "ready": True, "url": served.url, "exit_code": None}
    assert served in deploykit.deployments()
    assert "churn" in repr(served) and served.url in served._repr_html_()
    assert "Uvicorn running" in served.logs(None) or "Starting production" in served.logs(None)
