"""The front of a docker deployment: it owns the published port and forwards each request to the
current version's container, so clients keep their URL across releases.

Runs inside its own container (``deploykit/front``) with only httpx and uvicorn; it imports nothing
from deploykit. The current upstream is a JSON file, ``{"url": ..., "version": ...}``, replaced
atomically by ``docker exec`` when a new version has passed its checks; each request reads the latest
one. Requests already sent to the previous version finish there (deploykit waits until that version
has no request in flight before stopping it). A connection error to the upstream is retried on the
file's current upstream, so no client sees a switch.
"""

from __future__ import annotations

import asyncio
import json
import os

import httpx

UPSTREAM_FILE = os.environ.get("DEPLOYKIT_UPSTREAM_FILE", "/tmp/deploykit-upstream.json")
STATUS_PATH = "/_deploykit/front"
# Hop-by-hop headers, plus those that describe a body the front re-frames (httpx decodes compression).
SKIP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                "transfer-encoding", "upgrade", "host", "content-length", "content-encoding", "accept-encoding"}
RETRIES = 5


class Upstream:
    """The upstream file, re-read whenever it changes."""

    def __init__(self, path: str) -> None:
        self.path, self._stamp, self.current = path, None, {"url": None, "version": None}

    def get(self) -> dict:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return self.current
        if stamp != self._stamp:
            with open(self.path) as handle:
                self.current = json.load(handle)
            self._stamp = stamp
        return self.current


upstream = Upstream(UPSTREAM_FILE)
inflight: dict[str, int] = {}
_client: httpx.AsyncClient | None = None


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _forward(scope, body: bytes) -> tuple[httpx.Response, dict]:
    headers = [(k, v) for k, v in scope["headers"] if k.decode().lower() not in SKIP_HEADERS]
    path = scope["raw_path"].decode() if scope.get("raw_path") else scope["path"]
    if scope.get("query_string"):
        path += "?" + scope["query_string"].decode()
    last_error: Exception | None = None
    for attempt in range(RETRIES):
        target = upstream.get()
        if not target.get("url"):
            raise RuntimeError("no upstream configured yet")
        inflight[target["url"]] = inflight.get(target["url"], 0) + 1
        try:
            response = await _client.request(scope["method"], target["url"] + path, headers=headers, content=body)
            return response, target
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            last_error = exc  # the version went away mid-switch: retry on the current upstream
            await asyncio.sleep(0.05 * (attempt + 1))
        finally:
            inflight[target["url"]] -= 1
    raise last_error  # type: ignore[misc]


async def app(scope, receive, send) -> None:
    global _client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _client = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=2.0),
                                            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == STATUS_PATH:
        await _send_json(send, 200, {"upstream": upstream.get(), "inflight": {k: v for k, v in inflight.items() if v}})
        return
    body = await _read_body(receive)
    try:
        response, target = await _forward(scope, body)
    except Exception as exc:  # noqa: BLE001 - the client gets a clear 502, the front keeps running
        await _send_json(send, 502, {"error": f"the model service is unreachable: {type(exc).__name__}", "details": []})
        return
    headers = [(k.encode(), v.encode()) for k, v in response.headers.items() if k.lower() not in SKIP_HEADERS]
    headers.append((b"content-length", str(len(response.content)).encode()))
    headers.append((b"x-deploykit-version", str(target.get("version")).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
