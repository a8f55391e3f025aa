"""The served HTTP contract, against a really running `bentoml serve` of real packages."""

import json

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
    response = http.post("/predict_proba", json={"instances": records(X_test)})
    body = response.json()
    assert body["classes"] == [0, 1]
    # the plain path is the model itself; a compiled one differs by at most what the package measured on
    # every test row (these rows among them) when it chose the engine
    fast = served.package.manifest.serving.fast_path
    bound = 1e-9 if response.headers["x-deploykit-path"] == "sklearn" else fast["max_difference"] + 1e-12
    assert np.abs(np.asarray(body["probabilities"]) - churn_model.predict_proba(X_test)).max() <= bound
    assert np.abs(served.predict_proba(X_test) - churn_model.predict_proba(X_test)).max() <= bound


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


# -- hostile input (issue 13): every case once answered 500, or 200 without a word ----------------------------
def _body(churn, **changes):
    return json.dumps({"instances": [_row(churn, **changes)]})


HOSTILE = [
    ("object in a category", lambda c: _body(c, contract={"a": 1}), 422, "contract"),
    ("list in a category", lambda c: _body(c, contract=[1, 2]), 422, "contract"),
    ("10**20 in an integer", lambda c: _body(c, tenure_months=10**20), 422, "tenure_months"),
    ("2**63 in an integer", lambda c: _body(c, tenure_months=2**63), 422, "tenure_months"),
    ("400 digits in a number", lambda c: _body(c, monthly_charges=int("9" * 400)), 422, "monthly_charges"),
    ("1e300 in an integer", lambda c: _body(c, age=1e300), 422, "age"),
    ("10,000 levels deep", lambda c: "[" * 10_000 + "]" * 10_000, 400, None),
    ("region: {}", lambda c: '{"region": {}}', 400, None),
    ("9,000-character category", lambda c: _body(c, contract="x" * 9000), 422, "contract"),
    ("10 MB body", lambda c: _body(c, contract="x" * 10_000_000), 413, None),
]


@pytest.mark.parametrize("case, body, status, column", HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("path", ["/predict", "/predict_proba", "/explain"])
def test_hostile_bodies_are_a_4xx_in_the_documented_shape(http, churn, path, case, body, status, column):
    response = http.post(path, content=body(churn), headers={"content-type": "application/json"})
    payload = response.json()
    assert response.status_code == status and set(payload) == {"error", "details"}
    assert len(response.content) < 2000  # an echo is cut to about 80 characters: never as large as the input
    if column:
        assert payload["details"][0]["column"] == column


@pytest.mark.parametrize("method, path, status, fragment", [
    ("GET", "/no-such-route", 404, "no route GET /no-such-route"),
    ("GET", "/predict", 405, "does not accept GET; it accepts POST"),
    ("DELETE", "/schema", 405, "does not accept DELETE"),
    ("PUT", "/livez", 405, "/livez does not accept PUT"),
])
def test_unknown_routes_and_methods_answer_in_the_documented_shape(http, method, path, status, fragment):
    response = http.request(method, path)
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error", "details"} and fragment in response.json()["error"]


@pytest.mark.parametrize("headers, content, status, fragment", [
    ({"content-type": "text/plain"}, None, 415, "Content-Type 'text/plain' is not accepted"),
    ({}, None, 415, "no Content-Type"),
    ({"content-type": "application/json", "content-encoding": "gzip"}, None, 415, "Content-Encoding 'gzip'"),
    ({"content-type": "application/json; charset=utf-16"}, None, 415, "JSON requests are UTF-8"),
    ({"content-type": "application/json"}, "utf-16", 400, "not UTF-8"),
    ({"content-type": "application/json", "content-length": str(9 << 20)}, None, 413, "limit of 8,388,608 bytes"),
])
def test_the_decided_leniencies(http, churn, headers, content, status, fragment):
    body = _body(churn).encode("utf-16") if content == "utf-16" else _body(churn).encode()
    if "content-length" in headers:  # a declared size over the limit is refused before the body is read
        import http.client as client
        from urllib.parse import urlparse

        url = urlparse(str(http.base_url))
        connection = client.HTTPConnection(url.hostname, url.port, timeout=30)
        connection.putrequest("POST", "/predict")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)  # 9 MiB declared, a few hundred bytes sent
        answer = connection.getresponse()
        assert answer.status == status and fragment in json.loads(answer.read())["error"]
        connection.close()
        return
    response = http.post("/predict", content=body, headers=headers)
    assert response.status_code == status and fragment in response.json()["error"]


def test_duplicate_keys_keep_the_last_value(http, churn, churn_model):
    row = records(churn[1].iloc[:1])[0]
    text = '{"instances": [{"age": -5, ' + _body(churn)[len('{"instances": [{'):]
    response = http.post("/predict", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json()["predictions"] == churn_model.predict(churn[1].iloc[:1]).tolist()
    assert row["age"] != -5


def test_the_openapi_document_is_31_and_tells_the_truth(http, churn):
    spec = http.get("/docs.json").json()
    assert spec["openapi"] == "3.1.0" and "3.0" not in str(spec.get("openapi"))
    assert "413" in spec["paths"]["/predict"]["post"]["responses"]
    assert spec["components"]["schemas"]["Request"]["properties"]["instances"]["minItems"] == 1
    assert http.post("/predict", json={"instances": []}).status_code == 400  # minItems 1: an empty list is refused
