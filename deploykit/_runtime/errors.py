"""Errors the serving runtime raises, and the one shape every HTTP error body has.

Every non-2xx answer of a deploykit service (and of the front that stands before it) is::

    {"error": "<one sentence: what failed, the limit or value, what to do>",
     "details": [{"row": 0, "column": "age", "problem": "..."}, ...]}

:func:`error_body` makes it, :data:`ERROR_SCHEMA` and :func:`error_responses` describe it in an OpenAPI
document, and :class:`ErrorShape` is an ASGI middleware that gives it to any error answer an inner
app made in another shape (a router's 404 and 405, a framework's 500). Values echoed from a request
are cut by :func:`clip`, so an error is never larger than what caused it. The classes are re-exported
by :mod:`deploykit.exceptions`; this module imports nothing outside the standard library.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

ECHO_LIMIT = 80  # characters of a request's value an error message repeats
MAX_DETAILS = 20  # problems listed in "details"; the message counts the rest

logger = logging.getLogger("deploykit.service")


class DeployKitError(Exception):
    """Root of every error deploykit raises on purpose."""


class IntegrityError(DeployKitError, ValueError):
    """An artifact's sha256 differs from the one recorded when it was written: it will not be loaded."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InputError(DeployKitError, ValueError):
    """A request does not fit the model's input schema or limits; becomes an HTTP 4xx, never a 5xx."""

    def __init__(self, message: str, details: list[dict] | None = None, status: int = 422,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or []
        self.status = status
        self.headers = headers or {}

    def to_json(self) -> dict:
        return error_body(str(self), self.details)


class Unavailable(InputError):
    """The service cannot answer this request now (busy, or past its deadline): a 503 with Retry-After."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, status=503, headers={"retry-after": str(max(1, int(retry_after)))})
        self.retry_after = max(1, int(retry_after))


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def error_body(message: str, details: list | None = None) -> dict:
    return {"error": message, "details": list(details or [])}


# -- the shape in an OpenAPI 3.1 document (JSON Schema 2020-12) ---------------------------------------------
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "details"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string", "description": "what failed, the value or limit, and what to do"},
        "details": {
            "type": "array",
            "maxItems": MAX_DETAILS,
            "items": {
                "type": "object",
                "required": ["row", "column", "problem"],
                "additionalProperties": False,
                "properties": {
                    "row": {"type": ["integer", "null"], "minimum": 0, "description": "index in instances"},
                    "column": {"type": ["string", "null"]},
                    "problem": {"type": "string"},
                },
            },
        },
    },
}

STATUS_MEANING = {
    400: "the body is not UTF-8 JSON, is nested too deep, or is not {\"instances\": [...]}",
    401: "no credentials, or wrong ones (answered by the deployment's front)",
    403: "the credentials do not allow this route (answered by the deployment's front)",
    404: "no such route, or this model does not serve it (predict_proba of a regressor, explain turned off)",
    405: "the route does not accept this method; the Allow header lists the ones it does",
    413: "the body, the number of rows, a string, or an explanation's cost is over its limit",
    415: "Content-Type is not application/json (UTF-8), or a Content-Encoding was sent",
    422: "a row does not fit the input schema; details name the row, column and problem",
    429: "too many requests in flight; retry after the time in Retry-After",
    500: "the model failed on valid input: a fault of the service, never of the request",
    502: "the deployment's front could not reach the model server",
    503: "busy or past the request's deadline; retry after the time in Retry-After",
    504: "the request took longer than the server's timeout",
}


def error_responses(statuses) -> dict:
    """OpenAPI ``responses`` entries for ``statuses``, each a ``$ref`` to ``components.responses``."""
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in statuses}


def error_components(statuses=tuple(STATUS_MEANING)) -> dict:
    """``components`` entries: the ``Error`` schema and one response per status."""
    retry = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
    responses = {}
    for status in statuses:
        response = {"description": f"{HTTPStatus(status).phrase}: {STATUS_MEANING[status]}",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        if status in (429, 503):
            response["headers"] = retry
        responses[f"Error{status}"] = response
    return {"schemas": {"Error": ERROR_SCHEMA}, "responses": responses}


# -- any error answer, in the shape -------------------------------------------------------------------------
def _is_shaped(body: bytes) -> bool:
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and set(value) == {"error", "details"} and isinstance(value["error"], str)


def _message(status: int, scope: dict, headers: dict, body: bytes) -> str:
    method, path = scope.get("method", "?"), clip(scope.get("path", "?"))
    if status == 404:
        return f"no route {method} {path} here; the routes are listed at /docs.json"
    if status == 405:
        allowed = headers.get(b"allow", b"").decode("latin-1") or "another method"
        return f"{path} does not accept {method}; it accepts {allowed}"
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
        text = str(parsed.get("error") or parsed.get("detail") or text) if isinstance(parsed, dict) else text
    except ValueError:
        pass
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    return clip(text) if text and text != phrase else f"{status} {phrase}"


class ErrorShape:
    """ASGI middleware: every answer of status 400 or more leaves in the documented error shape.

    Answers already in the shape pass unchanged; others (a router's 404 and 405, a framework's plain
    500) are rewritten, keeping their status and headers such as Allow and Retry-After. An exception
    that escapes the inner app becomes a 500 in the shape, never a stack trace.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict = {}

        async def shaped_send(message) -> None:
            if message["type"] == "http.response.start":
                held["started"] = True
                if message["status"] < 400 or scope.get("method") == "HEAD":
                    held["pass"] = True
                    return await send(message)
                held["start"], held["body"] = message, []
                return None
            if held.get("pass") or "start" not in held or message["type"] != "http.response.body":
                return await send(message)
            held["body"].append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_shaped(scope, held["start"], b"".join(held["body"]), send)
                held["pass"] = True

        try:
            await self.app(scope, receive, shaped_send)
        except Exception:  # noqa: BLE001 - the client gets the shape, the log gets the traceback
            logger.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            if not held.get("started"):
                await _send_json(send, 500, error_body("the service failed on this request; see its logs"), [])
            elif "start" in held and not held.get("pass"):
                await self._send_shaped(scope, held["start"], b"", send)

    async def _send_shaped(self, scope, start: dict, body: bytes, send) -> None:
        status = start["status"]
        if _is_shaped(body):
            payload = body
        else:
            headers = {k.lower(): v for k, v in start.get("headers", [])}
            payload = json.dumps(error_body(_message(status, scope, headers, body))).encode()
        kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        await _send_raw(send, status, payload, kept)


async def _send_json(send, status: int, payload: dict, headers: list) -> None:
    await _send_raw(send, status, json.dumps(payload).encode(), headers)


async def _send_raw(send, status: int, body: bytes, headers: list) -> None:
    headers = [*headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
