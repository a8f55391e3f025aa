"""The service's OpenAPI 3.1 document, served at ``/docs.json``.

BentoML 1.4 builds its own ``/docs.json`` for a mounted FastAPI app by calling FastAPI's
``get_openapi`` (which writes JSON Schema 2020-12) and labelling the result OpenAPI 3.0.2, with only
the 200 answers FastAPI knows of. deploykit's app answers ``GET /docs.json`` itself instead (BentoML's
router tries the mounted app first), with this document: every route the service answers, every
status each can return, the error body's schema, and the bounds the validator enforces.
"""

from __future__ import annotations

from .errors import error_components, error_responses
from .jsonschema import instance_schema
from .limits import Limits
from .manifest import Manifest

# statuses a route can answer besides 200: its own, the front's (401, 403, 429, 502, 503) and the server's
_COMMON = (401, 403, 405, 429, 500, 502, 503, 504)
_POSTED = (400, 404, 413, 415, 422, *_COMMON)
_NUMBERS = {"type": "array", "items": {"type": "number"}}


def document(manifest: Manifest, limits: Limits) -> dict:
    schema = manifest.schema
    classifier = manifest.task != "regression"
    limited = (f"Limits: a body of at most {limits.max_body_bytes:,} bytes (413), JSON nested at most "
               f"{limits.max_depth} levels (400), 1 to {limits.max_batch:,} instances (400, 413), strings of at most "
               f"{limits.max_string:,} characters (422).")
    paths = {"/predict": _post("predict", "Predict one label or value per instance", "Predictions", limited)}
    if classifier:
        paths["/predict_proba"] = _post("predict_proba", "Class probabilities per instance", "Probabilities", limited)
    if manifest.explainer:
        per_row = manifest.explainer.get("seconds_per_row")
        cost = f" ({per_row * 1e3:.3g} ms per row, measured when the package was made)" if per_row else ""
        paths["/explain"] = _post("explain", "SHAP values per instance on the original columns", "Explanation",
                                  f"{limited} An explanation whose rows would cost more than {limits.explain_seconds:g} s"
                                  f"{cost} is refused (413); one not done within {limits.explain_deadline_seconds:g} s, "
                                  "waiting included, gets a 503 with Retry-After.")
    paths |= {
        "/schema": _get("schema", "JSON Schema of one instance", "application/json", {"type": "object"}),
        "/info": _get("info", "Package manifest: name, version, schema, parity, requirements", "application/json",
                      {"type": "object", "required": ["name", "version", "schema"]}),
    }
    if "card_html" in manifest.artifacts:
        paths["/card"] = _get("card", "The model card as one HTML page", "text/html", {"type": "string"})
        paths["/card.json"] = _get("card_json", "The model card as JSON", "application/json", {"type": "object"})
    paths |= {
        "/docs.json": _get("openapi", "This OpenAPI document", "application/json", {"type": "object"}),
        "/livez": _get("livez", "Liveness (BentoML)", "text/plain", {"type": "string"}, infra=True),
        "/healthz": _get("healthz", "Liveness, another name (BentoML)", "text/plain", {"type": "string"}, infra=True),
        "/readyz": _get("readyz", "Readiness (BentoML)", "text/plain", {"type": "string"}, infra=True),
        "/metrics": _get("metrics", "Prometheus metrics (BentoML)", "text/plain", {"type": "string"}, infra=True),
    }
    components = error_components()
    components["schemas"] |= _schemas(manifest, schema, limits)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": f"deploykit: {manifest.name}", "version": str(manifest.version),
                 "description": "Every answer other than 2xx has the body {\"error\": \"...\", \"details\": "
                                "[{\"row\", \"column\", \"problem\"}]}. Requests are UTF-8 JSON with Content-Type "
                                "application/json and no Content-Encoding.",
                 "x-deploykit-limits": limits.to_dict()},
        "paths": paths,
        "components": components,
    }


def _post(name: str, summary: str, answer: str, note: str = "") -> dict:
    return {"post": {
        "operationId": name, "summary": summary, "description": note,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Request"}}}},
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{answer}"}}}}, **error_responses(sorted(_POSTED))},
    }}


def _get(name: str, summary: str, media: str, body: dict, infra: bool = False) -> dict:
    statuses = tuple(s for s in _COMMON if not infra or s in (405, 500))
    if name.startswith("card"):
        statuses = (404, *statuses)
    return {"get": {
        "operationId": name, "summary": summary,
        "responses": {"200": {"description": "OK", "content": {media: {"schema": body}}},
                      **error_responses(sorted(statuses))},
    }}


def _schemas(manifest: Manifest, schema: dict, limits: Limits) -> dict:
    classes = manifest.classes
    label = {"enum": list(classes)} if classes else {"type": "number"}
    rows = {"minItems": 1, "maxItems": limits.max_batch}
    model = {"type": "object", "required": ["name", "version"],
             "properties": {"name": {"const": manifest.name}, "version": {"const": manifest.version}}}
    schemas = {
        "Instance": instance_schema(schema, title="Instance", limits=limits, standalone=False),
        "Request": {
            "type": "object", "required": ["instances"], "additionalProperties": False,
            "properties": {"instances": {"type": "array", **rows, "items": {"$ref": "#/components/schemas/Instance"},
                                         "description": f"1 to {limits.max_batch} rows"}},
        },
        "Model": model,
        "Predictions": _answer({"predictions": {"type": "array", **rows, "items": label}}),
    }
    if classes:
        width = {"minItems": len(classes), "maxItems": len(classes)}
        probability = {"type": "number", "minimum": 0, "maximum": 1}
        schemas["Probabilities"] = _answer({
            "probabilities": {"type": "array", **rows, "items": {"type": "array", **width, "items": probability}},
            "classes": {"const": list(classes)},
        })
    if manifest.explainer:
        names = [c["name"] for c in schema["columns"]]
        width = {"minItems": len(names), "maxItems": len(names)}
        explanation = {
            "feature_names": {"const": names},
            "values": {"type": "array", **rows, "items": {**_NUMBERS, **width}},
            "base_values": {**_NUMBERS, **rows}, "outputs": {**_NUMBERS, **rows},
            "output": {"enum": ["probability", "log_odds", "value"]},
            "explainer": {"enum": ["tree", "linear", "kernel"]},
        }
        if classes:
            explanation["classes"] = {"type": "array", **rows, "items": label}
        schemas["Explanation"] = _answer(explanation, optional=("classes",))
    return schemas


def _answer(properties: dict, optional: tuple = ()) -> dict:
    properties = {**properties, "model": {"$ref": "#/components/schemas/Model"}}
    return {"type": "object", "required": [k for k in properties if k not in optional], "properties": properties}
