"""The front of one deployment: it owns the deployment's address and forwards each request to the
version the routing table names.

Every response carries ``x-deploykit-version`` (the version that answered), ``x-deploykit-variant``
(``live`` or ``candidate``) and ``x-request-id``. A request whose upstream cannot be reached (a
version being retired, a process that died) is retried on the table's current live version, so no
client sees a switch. ``/metrics`` serves the front's own series (:mod:`.metrics`); everything under
``/_deploykit/`` is the control plane's admin API and needs the deployment's admin token in the
``x-deploykit-admin`` header.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from urllib.parse import urlsplit

from .metrics import Metrics, endpoint_label
from .routes import Routes, RoutesError, Variant
from .server import Request, Response, error_response
from .upstream import Pool, UpstreamTimeout, UpstreamUnavailable, request_bytes

ADMIN_PREFIX = "/_deploykit/"
ADMIN_HEADER = b"x-deploykit-admin"
MAX_BODY = 64 * 1024 * 1024  # the versions enforce their own, smaller limits; this one protects the front
RETRIES = 5
TIMEOUT = 120.0
# Hop-by-hop headers, and those the front sets itself.
_DROP_REQUEST = frozenset({b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection", b"te",
                           b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect",
                           b"x-request-id", ADMIN_HEADER})
_DROP_ANSWER = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date",
                          b"server", b"x-request-id"})
_JSON = (b"content-type", b"application/json")


class NoVersion(Exception):
    """The routing table names no version yet."""


def _request_id(request: Request) -> bytes:
    """The client's x-request-id when it is short and printable, else a new one."""
    value = request.header(b"x-request-id")
    if value and len(value) <= 64 and value.isascii() and value.replace(b"-", b"").isalnum():
        return value
    return os.urandom(16).hex().encode()


class Front:
    """The proxy and its state: the routing table, a connection pool per upstream, in-flight counts."""

    def __init__(self, name: str, state_dir: str, admin_token: str, supervisor=None) -> None:
        self.name, self.state_dir, self.supervisor = name, state_dir, supervisor
        self._token = admin_token.encode()
        self.routes = self._load_routes()
        self.pools: dict[str, Pool] = {}
        self.inflight: dict[str, int] = {}
        self.metrics = Metrics(name)
        self.started = time.time()

    # -- routing table ---------------------------------------------------------------------------------
    def _routes_path(self) -> str:
        return os.path.join(self.state_dir, "routes.json")

    def _load_routes(self) -> Routes:
        try:
            with open(self._routes_path()) as handle:
                return Routes.from_dict(json.load(handle))
        except (FileNotFoundError, ValueError):
            return Routes.empty(self.name)

    def set_routes(self, routes: Routes) -> None:
        routes.generation = self.routes.generation + 1
        scratch = self._routes_path() + ".new"
        with open(scratch, "w") as handle:
            json.dump(routes.to_dict(), handle)
        os.replace(scratch, self._routes_path())
        self.routes = routes
        if self.supervisor is not None:
            self.supervisor.routed(routes.upstreams())

    def pool(self, url: str) -> Pool:
        pool = self.pools.get(url)
        if pool is None:
            parts = urlsplit(url)
            pool = self.pools[url] = Pool(parts.hostname, parts.port)
        return pool

    async def drain(self, url: str, timeout: float) -> bool:
        """Wait until no request is in flight to ``url``; then close its idle connections."""
        deadline = time.monotonic() + timeout
        while self.inflight.get(url) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        drained = not self.inflight.get(url)
        if drained and url not in self.routes.upstreams():
            pool = self.pools.pop(url, None)
            if pool is not None:
                pool.close()
        return drained

    # -- requests --------------------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith(ADMIN_PREFIX):
            return await self._admin(request)
        if path == "/metrics" and request.method == "GET":
            return Response(200, self.metrics.render(self._monitor_series()),
                            [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])
        return await self._forward(request)

    async def _forward(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = _request_id(request)
        forwarded = [(k, v) for k, v in request.headers if k not in _DROP_REQUEST]
        forwarded.append((b"x-request-id", request_id))
        method = "GET" if request.method == "HEAD" else request.method  # a HEAD answer has no body to parse
        variant, version = "live", self._live_version()
        try:
            variant, version, answer = await self._send(method, request.target, forwarded, request.body)
        except UpstreamTimeout:
            response = error_response(504, f"the model service did not answer within {TIMEOUT:.0f} s")
        except NoVersion:
            response = error_response(503, f"{self.name} has no version serving; deploy one", [(b"retry-after", b"5")])
        except (UpstreamUnavailable, ConnectionError) as exc:
            response = error_response(502, f"the model service is unreachable: {exc}")
        else:
            headers = [(k, v) for k, v in answer.headers if k not in _DROP_ANSWER]
            headers += [(b"x-deploykit-version", version.encode()), (b"x-deploykit-variant", variant.encode())]
            response = Response(answer.status, answer.body, headers)
        response.headers.append((b"x-request-id", request_id))
        self.metrics.observe(version, variant, endpoint_label(request.path), response.status,
                             time.perf_counter() - started)
        return response

    def _live_version(self) -> str:
        return self.routes.live.version if self.routes.live else "none"

    async def _send(self, method: str, target: bytes, headers: list, body: bytes):
        """(variant, version, answer) from the table's choice; an unreachable upstream is retried on the
        current live version, which may have changed meanwhile (a release in progress)."""
        for attempt in range(RETRIES):
            chosen = self.routes.choose() if attempt == 0 else (("live", self.routes.live) if self.routes.live else None)
            if chosen is None:
                raise NoVersion()
            variant, chosen_variant = chosen
            try:
                return variant, chosen_variant.version, await self._exchange(chosen_variant, method, target, headers, body)
            except UpstreamUnavailable:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
        raise NoVersion()  # pragma: no cover - the loop returns or raises

    async def _exchange(self, variant: Variant, method: str, target: bytes, headers: list, body: bytes):
        url = variant.next_upstream()
        pool = self.pool(url)
        data = request_bytes(method, target, headers, body, f"{pool.host}:{pool.port}".encode())
        self.inflight[url] = self.inflight.get(url, 0) + 1
        try:
            return await pool.request(data, TIMEOUT)
        finally:
            self.inflight[url] -= 1

    def _monitor_series(self) -> str:
        """Series the host-side monitor wrote for this deployment (drift, prediction shares)."""
        try:
            with open(os.path.join(self.state_dir, "monitor.prom")) as handle:
                return handle.read()
        except OSError:
            return ""

    # -- the admin API -----------------------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        return hmac.compare_digest(request.header(ADMIN_HEADER) or b"", self._token)

    async def _admin(self, request: Request) -> Response:
        if not self._authorised(request):
            return error_response(401, "the admin API needs this deployment's admin token (x-deploykit-admin)")
        try:
            payload = json.loads(request.body) if request.body else {}
            status, answer = await self._admin_call(request.method, request.path[len(ADMIN_PREFIX):], payload)
        except (RoutesError, ValueError, KeyError, TypeError) as exc:
            status, answer = 400, {"error": f"{type(exc).__name__}: {exc}", "details": []}
        return Response(status, json.dumps(answer).encode(), [_JSON])

    async def _admin_call(self, method: str, what: str, payload: dict) -> tuple[int, dict]:
        if (method, what) == ("GET", "status"):
            return 200, self.status()
        if (method, what) == ("PUT", "routes"):
            routes = Routes.from_dict(payload)
            self.set_routes(routes)
            return 200, self.status()
        if (method, what) == ("POST", "drain"):
            drained = await self.drain(str(payload["upstream"]), float(payload.get("timeout", 30)))
            return 200, {"drained": drained, "inflight": self.inflight.get(str(payload["upstream"]), 0)}
        if self.supervisor is not None:
            handled = await self.supervisor.admin(method, what, payload)
            if handled is not None:
                return handled
        return 404, {"error": f"no admin call {method} /_deploykit/{what}", "details": []}

    def status(self) -> dict:
        status = {"name": self.name, "pid": os.getpid(), "started": self.started, "routes": self.routes.to_dict(),
                  "inflight": {url: n for url, n in self.inflight.items() if n}}
        if self.supervisor is not None:
            status["versions"] = self.supervisor.describe()
        return status

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
