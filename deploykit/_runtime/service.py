"""The one BentoML service every deploykit package is served by; its behaviour comes from the manifest.

A bento made by deploykit contains this runtime (as ``deploykit_runtime``) and the package under
``model/``. The HTTP contract is served by a FastAPI app mounted into the ``@bentoml.service`` class,
so responses, status codes and error bodies are exactly deploykit's, while BentoML still provides the
server, workers, ``/livez``, ``/readyz``, ``/metrics`` and the OpenAPI page at ``/``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import bentoml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .errors import InputError, IntegrityError
from .jsonschema import instance_schema
from .model import ModelRuntime, default_package_dir, read_manifest

logger = logging.getLogger("deploykit.service")
MANIFEST = read_manifest(default_package_dir())

app = FastAPI(
    title=f"deploykit: {MANIFEST['name']}",
    version=str(MANIFEST["version"]),
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
_state: dict[str, ModelRuntime] = {}

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {"instances": {"type": "array", "items": instance_schema(MANIFEST["schema"])}},
                },
            }
        },
    }
}


def _runtime() -> ModelRuntime:
    if "runtime" not in _state:
        _state["runtime"] = ModelRuntime.load()
    return _state["runtime"]


def _error(status: int, message: str, details: list | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "details": details or []}, status_code=status)


async def _answer(request: Request, action: Callable[[ModelRuntime, Any], dict]) -> Response:
    runtime = _runtime()
    try:
        frame = runtime.frame(await request.body())
        return JSONResponse(action(runtime, frame))
    except InputError as exc:
        return _error(exc.status, str(exc), exc.details)
    except Exception as exc:  # a model failure is ours to report, never a stack trace over HTTP
        logger.exception("model call failed")
        return _error(500, f"the model failed on this request: {type(exc).__name__}; see the service logs")


@app.post("/predict", summary="Predict one label or value per instance", openapi_extra=_BODY)
async def predict(request: Request) -> Response:
    return await _answer(request, ModelRuntime.predict)


@app.post("/predict_proba", summary="Class probabilities per instance (classifiers)", openapi_extra=_BODY)
async def predict_proba(request: Request) -> Response:
    return await _answer(request, ModelRuntime.predict_proba)


@app.post("/explain", summary="SHAP values per instance on the original columns", openapi_extra=_BODY)
async def explain(request: Request) -> Response:
    return await _answer(request, ModelRuntime.explain)


@app.get("/schema", summary="JSON Schema of one instance")
async def schema() -> Response:
    return JSONResponse(_runtime().json_schema())


@app.get("/info", summary="Package manifest: name, version, schema, parity, requirements")
async def info() -> Response:
    return JSONResponse(_runtime().manifest)


def _card(read: Callable[[ModelRuntime], bytes], media_type: str) -> Response:
    try:
        return Response(read(_runtime()), media_type=media_type)
    except InputError as exc:
        return _error(exc.status, str(exc), exc.details)
    except IntegrityError:
        logger.exception("model card failed its sha256 check")
        return _error(500, "the model card on this server failed its sha256 check and is not served; see the service logs")


@app.get("/card", summary="The model card, as one self-contained HTML page")
async def card() -> Response:
    return _card(ModelRuntime.card_html, "text/html; charset=utf-8")


@app.get("/card.json", summary="The model card as JSON; its model_card_toolkit key is a Model Card Toolkit v0.0.2 card")
async def card_json() -> Response:
    return _card(ModelRuntime.card_json, "application/json")


@bentoml.service(
    name=MANIFEST["service_name"],
    workers=MANIFEST.get("serving", {}).get("workers", 1),
    traffic={"timeout": 120},
)
@bentoml.asgi_app(app, path="/")
class DeployKitService:
    """Loads the package once per worker, before the worker reports ready."""

    def __init__(self) -> None:
        runtime = _runtime()
        if runtime.manifest.get("explainer"):
            runtime.explainer()  # build SHAP's explainer now, not on the first /explain request

