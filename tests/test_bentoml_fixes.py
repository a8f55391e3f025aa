"""The fix for BentoML's TimeoutMiddleware: answered requests leave no live timer behind, and a slow
request still gets a 504."""

import asyncio
import json

import pytest

from deploykit._runtime import bentoml_fixes


@pytest.fixture(scope="module")
def middleware():
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    bentoml_fixes.apply()
    assert TimeoutMiddleware._deploykit_fixed is True
    return TimeoutMiddleware


def _request(app, loop):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    loop.run_until_complete(app({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send))
    return sent


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _slow(scope, receive, send):
    await asyncio.sleep(5)


def test_answered_requests_leave_no_live_timer(middleware):
    loop = asyncio.new_event_loop()
    try:
        app = middleware(_ok, timeout=60)
        for _ in range(200):
            assert _request(app, loop)[0]["status"] == 200
        live = [h for h in loop._scheduled if not h.cancelled()]
        assert live == []  # unpatched BentoML keeps 200 timers (and their futures) alive for 60 s
    finally:
        loop.close()


def test_a_slow_request_still_times_out_with_a_504(middleware):
    loop = asyncio.new_event_loop()
    try:
        sent = _request(middleware(_slow, timeout=0.05), loop)
        assert sent[0]["status"] == 504
        assert "longer than 0.05 seconds" in json.loads(sent[1]["body"])["error"]
    finally:
        loop.close()
