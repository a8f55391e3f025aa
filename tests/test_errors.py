"""The one error shape: the ASGI middleware that gives it to any error answer, and its OpenAPI schema."""

import asyncio
import json

import jsonschema
import pytest

from deploykit._runtime.errors import ERROR_SCHEMA, ErrorShape, clip, error_body, error_components, error_responses


def _call(app, method="GET", path="/x"):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(ErrorShape(app)({"type": "http", "method": method, "path": path, "headers": []}, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def _answer(status, body, headers=()):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": [*headers]})
        await send({"type": "http.response.body", "body": body[:3], "more_body": True})
        await send({"type": "http.response.body", "body": body[3:]})
    return app


@pytest.mark.parametrize("status, body, headers, fragment", [
    (404, b'{"detail":"Not Found"}', [], "no route GET /x here; the routes are listed at /docs.json"),
    (405, b"Method Not Allowed", [(b"allow", b"POST")], "/x does not accept GET; it accepts POST"),
    (500, b"Internal Server Error", [], "500 Internal Server Error"),
    (503, b"busy, come back", [(b"retry-after", b"3")], "busy, come back"),
])
def test_error_answers_in_another_shape_are_rewritten(status, body, headers, fragment):
    got, sent_headers, payload = _call(_answer(status, body, [(b"content-type", b"text/plain"), *headers]))
    data = json.loads(payload)
    jsonschema.validate(data, ERROR_SCHEMA)
    assert got == status and fragment in data["error"] and data["details"] == []
    assert sent_headers[b"content-type"] == b"application/json" and int(sent_headers[b"content-length"]) == len(payload)
    for name, value in headers:  # Allow and Retry-After survive
        assert sent_headers[name] == value


def test_answers_in_the_shape_and_successes_pass_unchanged():
    shaped = json.dumps({"error": "row 0: bad", "details": [{"row": 0, "column": "a", "problem": "bad"}]}).encode()
    assert _call(_answer(422, shaped))[2] == shaped
    assert _call(_answer(200, b"plain ok"))[:3:2] == (200, b"plain ok")


def test_an_exception_becomes_a_500_in_the_shape_without_a_trace():
    async def broken(scope, receive, send):
        raise RuntimeError("secret internals")

    status, _, payload = _call(broken)
    assert status == 500 and "secret" not in payload.decode() and set(json.loads(payload)) == {"error", "details"}


def test_clip_and_the_openapi_pieces():
    assert clip("a" * 10) == "a" * 10 and clip("a" * 500).startswith("a" * 80 + "… (500 characters)")
    jsonschema.Draft202012Validator.check_schema(ERROR_SCHEMA)
    jsonschema.validate(error_body("x", [{"row": None, "column": None, "problem": "p"}]), ERROR_SCHEMA)
    components = error_components()
    assert set(error_responses([413, 503])) == {"413", "503"}
    assert "Retry-After" in components["responses"]["Error503"]["headers"]
    assert {f"Error{s}" for s in (400, 401, 403, 404, 405, 413, 415, 422, 429, 503)} <= set(components["responses"])


def test_bentoml_concurrency_limit_answers_429_in_the_shape():
    from bentoml._internal.server.http.traffic import MaxConcurrencyMiddleware

    from deploykit._runtime import bentoml_fixes

    bentoml_fixes.apply()

    async def run():
        gate = asyncio.Event()

        async def slow(scope, receive, send):
            await gate.wait()
            await _answer(200, b"ok")(scope, receive, send)

        app, sent = MaxConcurrencyMiddleware(slow, max_concurrency=1), []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
        first = asyncio.ensure_future(app(scope, None, send))
        await asyncio.sleep(0)
        await app(scope, None, send)
        gate.set()
        await first
        return sent

    sent = asyncio.run(run())
    assert sent[0]["status"] == 429 and (b"retry-after", b"1") in sent[0]["headers"]
    assert set(json.loads(sent[1]["body"])) == {"error", "details"}
