"""A small HTTP/1.1 client for the front's upstreams: pooled keep-alive connections, parsed by httptools.

General-purpose clients cost the front more CPU per request than the whole forwarding step may
(httpx measured ~0.3 ms a call here), so the front speaks HTTP/1.1 to its upstreams itself: a request
is one ``write`` of bytes the front already has, the answer is parsed by httptools' C parser, and the
connection goes back to a per-upstream pool. An error before any byte of the answer arrived is an
:class:`UpstreamUnavailable`, which the front may retry elsewhere: the upstream did not answer.
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools


class UpstreamUnavailable(Exception):
    """The upstream could not be reached, or closed the connection before answering."""


class UpstreamTimeout(Exception):
    """The upstream took longer than the request's deadline."""


class Answer:
    """An upstream's response: status, headers (lower-case names, as sent) and the whole body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def failed(self) -> bool:
        """A server error, or the model refusing a row the schema accepted (``x-deploykit-refusal``): for a
        candidate beside a live version, a failure of the candidate rather than of the request."""
        return self.status >= 500 or (self.status == 422 and any(n == b"x-deploykit-refusal" for n, _ in self.headers))


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.started = False  # a byte of the current answer has arrived
        self.closed = False

    # -- asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnavailable(f"unparseable answer: {exc}"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.waiter is not None and not self.waiter.done():
            # an answer cut off (a replica killed while it wrote it) went nowhere yet, as the front sends only whole
            # answers: the request may go to another replica like one the upstream never answered
            cut = " in the middle of its answer" if self.started else ""
            self.waiter.set_exception(UpstreamUnavailable(f"the upstream closed the connection{cut}: {exc or 'EOF'}"))

    # -- httptools callbacks ---------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        answer = Answer(self.parser.get_status_code(), self.headers, b"".join(self.chunks))
        keep = self.parser.should_keep_alive()
        self.headers, self.chunks, self.started = [], [], False
        waiter, self.waiter = self.waiter, None
        if keep:
            self.pool.release(self)
        else:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    # -- use -------------------------------------------------------------------------------------------
    def send(self, data: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one upstream (``host``, ``port``)."""

    def __init__(self, host: str, port: int, *, max_idle: int = 64, connect_timeout: float = 2.0) -> None:
        self.host, self.port, self.max_idle, self.connect_timeout = host, port, max_idle, connect_timeout
        self.idle: deque[_Connection] = deque()
        self.open: set[_Connection] = set()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamUnavailable(f"cannot connect to {self.host}:{self.port}: {exc or 'timed out'}") from None
        self.open.add(conn)
        return conn

    async def request(self, data: bytes, timeout: float | None = None) -> Answer:
        """Send one serialised request. An idle connection the upstream closed meanwhile fails before
        any answer arrives: the next one is tried, then a new connection."""
        while self.idle:
            conn = self.idle.pop()
            if conn.closed:
                continue
            try:
                return await self._exchange(conn, data, timeout)
            except UpstreamUnavailable:
                continue
        return await self._exchange(await self._connect(), data, timeout)

    async def _exchange(self, conn: _Connection, data: bytes, timeout: float | None) -> Answer:
        waiter = conn.send(data)
        if timeout is None:
            return await waiter
        handle = asyncio.get_running_loop().call_later(timeout, _expire, waiter, conn)
        try:
            return await waiter
        finally:
            handle.cancel()

    def release(self, conn: _Connection) -> None:
        if conn.closed or len(self.idle) >= self.max_idle:
            conn.close()
        else:
            self.idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        self.open.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        for conn in list(self.open):
            conn.close()
        self.idle.clear()


def _expire(waiter: asyncio.Future, conn: _Connection) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("the upstream did not answer in time"))
        conn.close()  # its late answer must not be read as the next request's


def request_bytes(method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, host: bytes) -> bytes:
    """A serialised HTTP/1.1 request with a fixed Content-Length and keep-alive."""
    lines = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\ncontent-length: ",
             str(len(body)).encode(), b"\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines += [b"\r\n", body]
    return b"".join(lines)
