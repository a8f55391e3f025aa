"""A minimal HTTP/1.1 server for the front: httptools parses, one ``write`` answers.

The front does little per request beyond moving bytes, so the server's own cost decides its overhead.
uvicorn with an ASGI app measured ~150 µs of CPU per forwarded request here, most of it in two socket
writes per response and the ASGI machinery; this server writes each response in one call and hands
the handler a parsed :class:`Request`. What it guarantees, because the front faces every client:

* keep-alive and pipelining (requests on one connection are answered in order);
* chunked and ``Content-Length`` request bodies, and ``Expect: 100-continue``;
* limits: a request head over :data:`MAX_HEAD` bytes is a 431, a body over the handler's limit a 413,
  and malformed HTTP a 400, all in the documented error shape, after which the connection closes;
* a head that does not complete within :data:`HEAD_TIMEOUT` seconds (slowloris) closes the connection,
  and so does a keep-alive connection idle for :data:`IDLE_TIMEOUT` seconds;
* on shutdown it stops accepting, lets the requests in flight finish, then closes.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import time
from collections import deque
from typing import Awaitable, Callable

import httptools

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0
IDLE_TIMEOUT = 75.0
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


class Request:
    """A parsed request: method, path (decoded for routing), raw target (sent on as is), headers, body."""

    __slots__ = ("method", "target", "path", "query", "headers", "body", "keep_alive")

    def __init__(self, method: str, target: bytes, headers: list, body: bytes, keep_alive: bool) -> None:
        self.method, self.target, self.headers, self.body, self.keep_alive = method, target, headers, body, keep_alive
        url = httptools.parse_url(target)
        self.path = url.path.decode("latin-1")
        self.query = url.query or b""

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: bytes = b"", headers: list | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or []


Handler = Callable[[Request], Awaitable[Response]]


def error_response(status: int, message: str, headers: list | None = None) -> Response:
    """The documented error shape: ``{"error": ..., "details": [...]}``."""
    body = json.dumps({"error": message, "details": []}).encode()
    return Response(status, body, [(b"content-type", b"application/json"), *(headers or [])])


class _Clock:
    """The Date header, formatted at most once a second."""

    def __init__(self) -> None:
        self.second, self.value = 0, b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second, self.value = now, email.utils.formatdate(now, usegmt=True).encode()
        return self.value


_clock = _Clock()


def serialise(response: Response, keep_alive: bool, head_only: bool = False) -> bytes:
    parts = [b"HTTP/1.1 ", str(response.status).encode(), b" ", _REASONS.get(response.status, b""), b"\r\n"]
    for name, value in response.headers:
        parts += [name, b": ", value, b"\r\n"]
    parts += [b"content-length: ", str(len(response.body)).encode(), b"\r\ndate: ", _clock.date(), b"\r\n"]
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(response.body)
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request] = deque()
        self.busy = False
        self.closing = False
        self.last = time.monotonic()
        self.head_started: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.refused: Response | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(error_response(400, "protocol upgrades (WebSocket, HTTP/2) are not served here"))
        except httptools.HttpParserError as exc:
            if self.refused is None:
                self._refuse(error_response(400, f"malformed HTTP request: {str(exc)[:120]}"))

    # -- httptools callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self.head_started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value)
        if self.size > MAX_HEAD:
            self._refuse(error_response(431, f"the request head is larger than {MAX_HEAD // 1024} KiB"))
            raise httptools.HttpParserError("head too large")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_started = None
        self.size = 0
        self.limit = limit = self.server.max_body()
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                self._refuse(_too_large(int(value), limit))
                raise httptools.HttpParserError("body too large")
            if name == b"expect" and value.lower() == b"100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self._refuse(_too_large(None, self.limit))
            raise httptools.HttpParserError("body too large")
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        request = Request(self.parser.get_method().decode("latin-1"), self.url, self.headers, b"".join(self.body),
                          self.parser.should_keep_alive())
        self._reset()
        self.queue.append(request)
        if len(self.queue) > 16:  # a client pipelining far ahead waits for its answers
            self.transport.pause_reading()
        if not self.busy:
            self.busy = True
            asyncio.ensure_future(self._serve())

    # -- answering -------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        server = self.server
        try:
            while self.queue and not self.closing:
                request = self.queue.popleft()
                server.inflight += 1
                try:
                    response = await server.handler(request)
                except Exception as exc:  # noqa: BLE001 - the client gets a 500 in the documented shape
                    server.log(f"unhandled error answering {request.method} {request.path}: {type(exc).__name__}: {exc}")
                    response = error_response(500, "the front failed on this request; see its log")
                finally:
                    server.inflight -= 1
                keep = request.keep_alive and not server.stopping
                if not self.closing:
                    self.transport.write(serialise(response, keep, request.method == "HEAD"))
                    if not keep:
                        self.closing = True
                        self.transport.close()
                if len(self.queue) <= 16 and not self.closing:
                    self.transport.resume_reading()
        finally:
            self.busy = False
            self.last = time.monotonic()

    def _refuse(self, response: Response) -> None:
        """Answer a request that cannot be read, then close (what follows on the wire is unknowable)."""
        self.refused = response
        if not self.closing and self.transport is not None:
            self.transport.write(serialise(response, keep_alive=False))
            self.closing = True
            self.transport.close()

    def sweep(self, now: float) -> None:
        """Close a connection stuck in a request head, or idle past the keep-alive timeout."""
        if self.closing or self.busy:
            return
        stuck = self.head_started is not None and now - self.head_started > HEAD_TIMEOUT
        if stuck:
            self._refuse(error_response(408, f"the request head did not arrive within {HEAD_TIMEOUT:.0f} s"))
        elif now - self.last > IDLE_TIMEOUT:
            self.closing = True
            self.transport.close()


def _too_large(size: int | None, limit: int) -> Response:
    got = f"of {size:,} bytes " if size is not None else ""
    return error_response(413, f"the request body {got}is over the limit of {limit:,} bytes; send fewer rows per request")


class Server:
    """Serves ``handler`` on a listening socket until :meth:`stop`."""

    def __init__(self, handler: Handler, *, max_body: int | Callable[[], int], log: Callable[[str], None] = print) -> None:
        # max_body: bytes, or what to ask for them per request (the front: the routed versions' own limit)
        self.handler, self.log = handler, log
        self.max_body = max_body if callable(max_body) else (lambda: max_body)
        self.connections: set[_Connection] = set()
        self.inflight = 0
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self, host: str, port: int, backlog: int = 4096) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=backlog,
                                                reuse_address=True)
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.sweep(now)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, let requests in flight finish (at most ``timeout`` s), close every connection."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + timeout
        while (self.inflight or any(c.busy for c in self.connections)) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
