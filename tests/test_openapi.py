"""The OpenAPI 3.1 document a service serves at /docs.json: every status, the error schema, the bounds."""

import jsonschema
import numpy as np
import pandas as pd
import pytest

from deploykit._runtime.limits import Limits
from deploykit._runtime.manifest import Artifact, Manifest
from deploykit._runtime.openapi import document
from deploykit._schema import infer_schema, records


@pytest.fixture(scope="module")
def frame():
    return pd.DataFrame({"age": np.array([30, 41], dtype="int64"), "income": [1.5, np.nan], "plan": ["a", "b"]})


def _manifest(frame, task="binary", explainer=True):
    return Manifest(name="m", version="3", task=task, estimator="sklearn.dummy.DummyClassifier",
                    classes=None if task == "regression" else [0, 1], schema=infer_schema(frame, max_batch=7),
                    explainer={"kind": "tree"} if explainer else None,
                    artifacts={"card_html": Artifact(file="card.html", sha256="0" * 64)})


def _validator(doc, name):
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def test_a_31_document_with_every_status_and_the_error_schema(frame):
    doc = document(_manifest(frame), Limits(max_batch=7))
    assert doc["openapi"] == "3.1.0" and "$schema" not in str(doc["components"]["schemas"]["Instance"])
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for path in ("/predict", "/predict_proba", "/explain"):
        statuses = set(doc["paths"][path]["post"]["responses"])
        assert {"200", "400", "401", "403", "404", "405", "413", "415", "422", "429", "503"} <= statuses
    for path in ("/livez", "/readyz", "/metrics", "/schema", "/info", "/docs.json", "/card", "/card.json"):
        assert "200" in doc["paths"][path]["get"]["responses"]
    error = doc["components"]["responses"]["Error422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}


def test_the_request_schema_states_the_bounds_the_validator_enforces(frame):
    doc = document(_manifest(frame), Limits(max_batch=7, max_string=99))
    instances = doc["components"]["schemas"]["Request"]["properties"]["instances"]
    assert (instances["minItems"], instances["maxItems"]) == (1, 7)  # so {"instances": []} is invalid: a 400
    age = doc["components"]["schemas"]["Instance"]["properties"]["age"]
    assert (age["minimum"], age["maximum"]) == (-(2**63), 2**63 - 1)
    request = _validator(doc, "Request")
    assert request.is_valid({"instances": records(frame)})
    for bad in ({"instances": []}, {"instances": records(frame) * 4}, {"instances": [{"age": 2**63}]}, {"rows": []}):
        assert not request.is_valid(bad)


def test_routes_a_model_does_not_serve_are_not_in_the_document(frame):
    paths = document(_manifest(frame, task="regression", explainer=False), Limits())["paths"]
    assert "/predict_proba" not in paths and "/explain" not in paths and "/predict" in paths


def test_the_limits_are_stated(frame):
    manifest = _manifest(frame)
    manifest.explainer["seconds_per_row"] = 0.004
    doc = document(manifest, Limits(max_batch=7, max_body_bytes=4096, explain_seconds=3))
    assert doc["info"]["x-deploykit-limits"]["max_body_bytes"] == 4096
    assert "a body of at most 4,096 bytes (413)" in doc["paths"]["/predict"]["post"]["description"]
    assert "cost more than 3 s (4 ms per row" in doc["paths"]["/explain"]["post"]["description"]
