"""The one BentoML service every deploykit package is served by; its behaviour comes from the manifest.

A bento made by deploykit contains this runtime (as ``deploykit_runtime``) and the package under
``model/``. The HTTP contract is served by a FastAPI app mounted into the ``@bentoml.service`` class,
so responses, status codes and error bodies are exactly deploykit's, while BentoML still provides the
server, workers, ``/livez``, ``/readyz``, ``/metrics`` and the OpenAPI page at ``/`` (whose document,
``/docs.json``, is deploykit's own: :mod:`.openapi`). Limits on every request are in :mod:`.limits`;
``/explain`` runs off the event loop (:mod:`.explaining`). ``POST /predict`` and ``/predict_proba`` reach
the same handler past BentoML's per-request middlewares, still counted in its metrics (:mod:`.hotroutes`).
"""

from __future__ import annotations

import os

# One compute thread per request unless the operator says otherwise, set before any numeric library
# loads. On a server, OpenMP's spinning worker threads fight the event loop for the cores: measured
# here, a HistGradientBoosting model's 1-row /predict went from p50 146 ms to 2.6 ms.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import asyncio  # noqa: E402 - after the thread settings above
import logging  # noqa: E402
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import bentoml  # noqa: E402
from fastapi import FastAPI, Request
from fastapi.responses import Response

from . import bentoml_fixes
from .errors import ErrorShape, InputError, IntegrityError, clip, error_body
from .explaining import ExplainPool
from .hotroutes import HOT_PATHS, HotRoutes
from .limits import Limits
from .manifest import Manifest
from .model import ModelRuntime, body_too_large, default_package_dir, dumps, explanations_off
from .openapi import document

logger = logging.getLogger("deploykit.service")
bentoml_fixes.apply()
MANIFEST = Manifest.read(default_package_dir())
LIMITS = Limits.from_manifest(MANIFEST)
OPENAPI = dumps(document(MANIFEST, LIMITS))

app = FastAPI(
    title=f"deploykit: {MANIFEST.name}",
    version=str(MANIFEST.version),
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
_state: dict[str, Any] = {}


def _runtime() -> ModelRuntime:
    if "runtime" not in _state:
        _state["runtime"] = ModelRuntime.load()
    return _state["runtime"]


def _explain_pool(runtime: ModelRuntime) -> ExplainPool:
    if "explain" not in _state:
        _state["explain"] = ExplainPool(runtime.checked_explain, runtime.limits, runtime.manifest.explainer)
    return _state["explain"]


def _json(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, details: list | None = None, headers: dict | None = None) -> Response:
    return _json(error_body(message, details), status, headers)


def _unsupported_media(request: Request) -> str | None:
    """Why the body's declared type or encoding is refused (415), or None: UTF-8 JSON, unencoded, only."""
    declared = request.headers.get("content-type")
    if declared is None:
        return "the request has no Content-Type; send the body as JSON with Content-Type: application/json"
    media, _, parameters = declared.partition(";")
    if media.strip().lower() != "application/json":
        return f"Content-Type {clip(declared)!r} is not accepted; send the body as JSON with Content-Type: application/json"
    charset = next((p.split("=", 1)[1].strip(' "').lower() for p in parameters.split(";") if p.strip().lower().startswith("charset=")), "utf-8")
    if charset not in ("utf-8", "utf8"):
        return f"charset {clip(charset)!r} is not accepted; JSON requests are UTF-8"
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return f"Content-Encoding {clip(encoding)!r} is not accepted; send the JSON uncompressed"
    return None


async def _body(request: Request, limits: Limits) -> bytes:
    """The request body, refused (415, 413) before more than the size limit is read."""
    problem = _unsupported_media(request)
    if problem:
        raise InputError(problem, status=415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise body_too_large(int(declared), limits)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise body_too_large(None, limits)
        chunks.append(chunk)
    return b"".join(chunks)


class Coalescer:
    """Runs one model call at a time in a worker thread; requests that arrive meanwhile go together in
    the next call. A request that finds the model idle is dispatched at once, so coalescing never adds
    latency at low load, and at high load one call (a fixed few milliseconds for tree ensembles,
    whatever the row count) answers many requests."""

    def __init__(self, call: Callable[[dict], list], single: Callable[[dict], list]) -> None:
        self.call, self.single = call, single  # single: for one request alone (its own error, if any)
        self.waiting: list[tuple[dict, int, asyncio.Future]] = []
        self.busy = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploykit-model")

    async def submit(self, columns: dict, rows: int) -> tuple[list, int]:
        """This request's results, and how many rows the model call that answered it had."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((columns, rows, future))
        if not self.busy:
            self.busy = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                merged = {name: [v for cols, _, _ in batch for v in cols[name]] for name in batch[0][0]}
                try:
                    results = await loop.run_in_executor(self.executor, self.call, merged)
                except Exception:
                    await self._one_by_one(batch)  # one request's failure must not fail the others
                    continue
                start, total = 0, sum(rows for _, rows, _ in batch)
                for _, rows, future in batch:
                    if not future.done():
                        future.set_result((results[start:start + rows], total))
                    start += rows
        finally:
            self.busy = False

    async def _one_by_one(self, batch: list) -> None:
        loop = asyncio.get_running_loop()
        for columns, _, future in batch:
            try:
                result = await loop.run_in_executor(self.executor, self.single, columns)
                future.set_result((result, len(result)))
            except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                future.set_exception(exc)


_coalescers: dict[str, Coalescer] = {}


def _coalescer(kind: str, runtime: ModelRuntime) -> Coalescer:
    if kind not in _coalescers:
        if kind == "predict":
            _coalescers[kind] = Coalescer(runtime.labels, runtime.checked_labels)
        else:
            _coalescers[kind] = Coalescer(runtime.probabilities, runtime.checked_probabilities)
    return _coalescers[kind]


async def _model_call(request: Request, kind: str) -> Response:
    runtime = _runtime()
    try:
        if kind == "explain" and not runtime.manifest.explainer:
            raise explanations_off()
        body = await _body(request, runtime.limits)
        columns = runtime.columns(body)
        rows = len(next(iter(columns.values()))) if columns else 0
        if kind == "explain":
            payload, path, batch = await _explain_pool(runtime).run(columns, rows), "shap", rows
        elif runtime.fast is not None:  # microseconds: answer inline, no thread hand-off
            values = runtime.checked_labels(columns) if kind == "predict" else runtime.checked_probabilities(columns)
            payload, path, batch = _payload(kind, values, runtime), runtime.path, rows
        else:
            values, batch = await _coalescer(kind, runtime).submit(columns, rows)
            payload, path = _payload(kind, values, runtime), runtime.path
        # which path answered, and how many rows the model call had (more than sent: coalesced)
        return _json(payload, headers={"x-deploykit-path": path, "x-deploykit-batch": str(batch)})
    except InputError as exc:
        return _error(exc.status, str(exc), exc.details, exc.headers)
    except Exception as exc:  # a model failure is ours to report, never a stack trace over HTTP
        logger.exception("model call failed")
        return _error(500, f"the model failed on this request: {type(exc).__name__}; see the service logs")


def _payload(kind: str, values: list, runtime: ModelRuntime) -> dict:
    if kind == "predict":
        return {"predictions": values, "model": runtime.model_info}
    return {"probabilities": values, "classes": runtime.classes, "model": runtime.model_info}


@app.post("/predict")
async def predict(request: Request) -> Response:
    return await _model_call(request, "predict")


@app.post("/predict_proba")
async def predict_proba(request: Request) -> Response:
    return await _model_call(request, "predict_proba")


@app.post("/explain")
async def explain(request: Request) -> Response:
    return await _model_call(request, "explain")


@app.get("/schema")
async def schema() -> Response:
    return _json(_runtime().json_schema())


@app.get("/info")
async def info() -> Response:
    return _json(_runtime().manifest.to_dict())


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


@app.get("/card.json")
async def card_json() -> Response:
    return _card(ModelRuntime.card_json, "application/json")


@app.get("/docs.json")
async def openapi() -> Response:
    """The OpenAPI 3.1 document (:mod:`.openapi`); it shadows BentoML's, which the mounted app precedes."""
    return Response(OPENAPI, media_type="application/json")


def _verify_signature() -> None:
    """The package this worker serves must be what a trusted key signed, file by file."""
    from .signature import TRUSTED_ENV, trusted_from_env, verify_tree

    trusted = trusted_from_env()
    if trusted is None:
        logger.warning("$%s is not set: the package's files are checked against its signature, but its signer "
                       "is not checked against a list of trusted keys", TRUSTED_ENV)
    key = verify_tree(default_package_dir().parent, MANIFEST, trusted)
    logger.info("package signature verified: signed by key %s", key)


@app.post("/_deploykit/shutdown", include_in_schema=False)
async def shutdown(request: Request) -> Response:
    """The deployment's front asks a version it no longer routes to (a failed canary, a replaced live
    version) to exit, where it cannot stop the process itself (a container). Needs the deployment's token."""
    import hmac
    import signal

    token = os.environ.get("DEPLOYKIT_INTERNAL_TOKEN", "")
    given = request.headers.get("x-deploykit-internal", "")
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return _error(404, f"no route {request.url.path}")
    # the server's arbiter is this worker's parent: its graceful stop ends every worker, and the container
    asyncio.get_running_loop().call_later(0.2, os.kill, os.getppid(), signal.SIGTERM)
    return _json({"stopping": True})


@bentoml.service(
    name=MANIFEST.service_name,
    workers=int(os.environ.get("DEPLOYKIT_WORKERS") or MANIFEST.serving.workers),
    traffic={"timeout": 120},
    logging={"access": {"enabled": MANIFEST.serving.access_log}},
)
@bentoml.asgi_app(app, path="/")
class DeployKitService:
    """Loads the package once per worker, before the worker reports ready."""

    def __init__(self) -> None:
        import gc

        _verify_signature()
        runtime = _runtime()
        # SHAP (about 110 MiB and a second of imports) loads with the first /explain request, unless the
        # package asks for it up front: a worker that only predicts starts sooner and stays smaller.
        preload = os.environ.get("DEPLOYKIT_PRELOAD_EXPLAINER") or runtime.manifest.serving.preload_explainer
        if runtime.manifest.explainer and preload not in (None, False, "0", ""):
            runtime.explainer()
        # The model, SHAP and the libraries are loaded for good: move them out of the collector's way,
        # so a full collection no longer walks them in the middle of a request (a latency tail).
        gc.collect()
        gc.freeze()


# Outside the router, so a 404 or 405 from BentoML's routes gets the error shape too.
DeployKitService.add_asgi_middleware(ErrorShape)


async def _hot(scope, receive, send) -> None:
    """POST /predict and /predict_proba the short way (:mod:`.hotroutes`): the routes' own handler."""
    response = await _model_call(Request(scope, receive), HOT_PATHS[scope["path"]])
    await response(scope, receive, send)


def _hot_enabled() -> bool:
    """The short way skips tracing, the access log, the request timeout and a concurrency limit: only when
    none is asked for, and the compiled path answers (in microseconds)."""
    if os.environ.get("DEPLOYKIT_HOT_ROUTES", "1") == "0" or _runtime().fast is None:
        return False
    from bentoml._internal.container import BentoMLContainer

    server = BentoMLContainer.api_server_config
    return (BentoMLContainer.tracing.exporter_type.get() is None and not server.logging.access.enabled.get()
            and not server.traffic.max_concurrency.get())


bentoml_fixes.wrap_service_app(lambda built: HotRoutes(built, ErrorShape(_hot), _hot_enabled))

