"""The front of one deployment: it owns the deployment's address and forwards each request to the
version the routing table names.

An upstream given by name may stand for several replicas (a Swarm service's ``tasks.<service>``): the
front resolves it every second and spreads its requests over the addresses (:mod:`.resolve`).
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

from . import settings
from .audit import AuditLog
from .auth import Authenticator
from .capture import CaptureWriter, parse_outcomes_body
from .experiment import Experiment
from .metrics import Metrics, endpoint_label
from .resolve import REFRESH_SECONDS, Resolver
from .routes import Routes, RoutesError, Variant
from .server import Request, Response, error_response
from .strategy import decide
from .upstream import Pool, UpstreamTimeout, UpstreamUnavailable, request_bytes

ADMIN_PREFIX = "/_deploykit/"
ADMIN_HEADER = b"x-deploykit-admin"
MAX_BODY = 64 * 1024 * 1024  # the versions enforce their own, smaller limits; this one protects the front
RETRIES = 5
TIMEOUT = 120.0
MIRROR_QUEUE = 256  # copies waiting for a shadow; beyond this they are dropped (and counted), never waited for
MIRROR_WORKERS = 4
MIRROR_TIMEOUT = 10.0
CONTROL_SECONDS = 0.25  # how often a canary's guardrails and steps are checked (and after each candidate failure)
INTERNAL_HEADER = b"x-deploykit-internal"
AUDITED = frozenset({"/predict", "/predict_proba", "/explain"})  # prediction requests: one audit record each
CHECKPOINT_SECONDS = 60.0
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

    def __init__(self, name: str, state_dir: str, admin_token: str, supervisor=None, audit_key: str | None = None) -> None:
        self.name, self.state_dir, self.supervisor = name, state_dir, supervisor
        self._token = admin_token.encode()
        self.routes = self._load_routes()
        self.pools: dict[str, Pool] = {}  # by address: an upstream's own URL, or one of the addresses its name resolves to
        self.inflight: dict[str, int] = {}  # by upstream, as the routing table names it (what draining waits for)
        self.resolver = Resolver()
        self.metrics = Metrics(name)
        self.metrics.help["deploykit_mirror_dropped_total"] = "Copies for a shadow dropped because its queue was full."
        self.metrics.help["deploykit_capture_dropped_total"] = "Answered requests not captured although sampled."
        self.experiment = Experiment(state_dir)
        chosen = settings.read(state_dir)
        self.capture = CaptureWriter(state_dir, name, **chosen["capture"])
        self.auth = Authenticator(state_dir, name) if chosen["auth"] else None
        self.audit_key = audit_key
        self.audit = AuditLog(state_dir, name=name, key_path=audit_key) if chosen["audit"] else None
        self.mirrors: asyncio.Queue | None = None
        self.started = time.time()
        self._tasks: list[asyncio.Task] = []

    # -- routing table ---------------------------------------------------------------------------------
    def _routes_path(self) -> str:
        return os.path.join(self.state_dir, "routes.json")

    def _load_routes(self) -> Routes:
        try:
            with open(self._routes_path()) as handle:
                return Routes.from_dict(json.load(handle))
        except (FileNotFoundError, ValueError):
            return Routes.empty(self.name)

    def start_background(self) -> None:
        """The tasks that serve a strategy: copies for a shadow, and the canary's control loop."""
        self.mirrors = asyncio.Queue(MIRROR_QUEUE)
        self._tasks = [asyncio.ensure_future(self._mirror_worker()) for _ in range(MIRROR_WORKERS)]
        self._tasks.append(asyncio.ensure_future(self._control()))
        self._tasks.append(asyncio.ensure_future(self._checkpoints()))
        self._tasks.append(asyncio.ensure_future(self._resolving()))

    async def _resolving(self) -> None:
        """Resolve the routed upstream names every second; close idle connections to addresses no longer listed."""
        while True:
            for address in await self.resolver.refresh(self.routes.upstreams()):
                self._close_idle(address)
            await asyncio.sleep(REFRESH_SECONDS)

    def _close_idle(self, address: str) -> None:
        """Close the idle connections to ``address``; its requests in flight finish on theirs."""
        pool = self.pools.get(address)
        if pool is None:
            return
        while pool.idle:
            pool.idle.pop().close()
        if not pool.open:
            del self.pools[address]

    async def _checkpoints(self) -> None:
        """Sign the audit chain's head every minute, as well as every thousand records."""
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            if self.audit is not None:
                self.audit.checkpoint()

    def max_body(self) -> int:
        """The body size the server reads at most: the routed versions' own limit (they answer 413 past it)."""
        return self.routes.max_body(MAX_BODY)

    def set_routes(self, routes: Routes) -> None:
        routes.generation = self.routes.generation + 1
        scratch = self._routes_path() + ".new"
        with open(scratch, "w") as handle:
            json.dump(routes.to_dict(), handle)
        os.replace(scratch, self._routes_path())
        self.routes = routes
        if self.supervisor is not None:
            self.supervisor.routed(routes.upstreams())

    # -- capture ----------------------------------------------------------------------------------------
    def configure(self, capture: dict | None = None, auth: bool | None = None, audit: bool | None = None) -> dict:
        """Apply the settings deploy() gave (capture, API keys, audit) from now on; return them all."""
        changes = {}
        if capture is not None:
            replacement = CaptureWriter(self.state_dir, self.name, capture["fraction"], retention=capture.get("retention"))
            previous, self.capture = self.capture, replacement
            previous.close()
            changes["capture"] = {"fraction": float(capture["fraction"]), "retention": capture.get("retention")}
        if auth is not None:
            self.auth = Authenticator(self.state_dir, self.name) if auth else None
            changes["auth"] = bool(auth)
        if audit is not None and bool(audit) != (self.audit is not None):
            if self.audit is not None:
                self.audit.close()
            self.audit = AuditLog(self.state_dir, name=self.name, key_path=self.audit_key) if audit else None
            changes["audit"] = bool(audit)
        return settings.write(self.state_dir, **changes)

    def _outcomes(self, request: Request) -> Response:
        """``POST /outcomes``: known labels, joined to captured predictions by request id."""
        if self.capture.fraction == 0:
            return error_response(409, f"capture is off for {self.name}, so outcomes have no predictions to join; "
                                       "deploy with capture > 0")
        try:
            triples = parse_outcomes_body(request.body)
        except ValueError as exc:
            return error_response(400, str(exc))
        if not self.capture.record_outcomes(triples):
            return error_response(503, "the capture queue is full; send the outcomes again shortly", [(b"retry-after", b"1")])
        return Response(200, json.dumps({"accepted": len(triples)}).encode(), [_JSON])

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
            for address in {url, *self.resolver.every(url)}:
                pool = self.pools.pop(address, None)
                if pool is not None:
                    pool.close()
            self.resolver.forget(url)
        return drained

    # -- requests --------------------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith(ADMIN_PREFIX):
            return await self._admin(request)
        key_id = None
        if self.auth is not None:
            key_id, refused = self.auth.check(path, request.method, request.headers, request.body)
            if refused is not None:
                response = Response(refused.status, refused.body, [_JSON, *refused.headers])
                self._audit(request, response, _request_id(request), None, self._live_version(), "live")
                return response
        if path == "/metrics" and request.method == "GET":
            self.metrics.counters[("deploykit_capture_dropped_total", ())] = self.capture.dropped
            extra = self._monitor_series() + (self.auth.metrics() if self.auth is not None else "")
            return Response(200, self.metrics.render(extra), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])
        if path == "/outcomes" and request.method == "POST":
            return self._outcomes(request)
        return await self._forward(request, key_id)

    def _audit(self, request: Request, response: Response, request_id: bytes, key_id: str | None, version: str,
               variant: str) -> None:
        """One record per prediction request, written before the answer is sent: nothing acknowledged is lost."""
        if self.audit is not None and request.path in AUDITED:
            self.audit.request(request_id=request_id.decode(), version=version, variant=variant, key_id=key_id,
                               method=request.method, path=request.path, status=response.status,
                               input=request.body, output=response.body)

    async def _forward(self, request: Request, key_id: str | None = None) -> Response:
        arrived, started = time.time(), time.perf_counter()
        request_id = _request_id(request)
        forwarded = [(k, v) for k, v in request.headers if k not in _DROP_REQUEST]
        forwarded.append((b"x-request-id", request_id))
        call = (("GET" if request.method == "HEAD" else request.method), request.target, forwarded, request.body)
        variant, version = "live", self._live_version()
        try:
            variant, version, answer = await self._send(request, call, request_id)
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
        seconds = time.perf_counter() - started
        self.metrics.observe(version, variant, endpoint_label(request.path), response.status, seconds)
        if self.routes.candidate is not None:
            self.experiment.tally.add(variant, seconds, response.status >= 500)
            self.experiment.keep(request_id, variant, False, request.path, response.status, response.body)
        self.capture.record(request_id.decode(), arrived, version, variant, request.path, response.status, request.body,
                            response.body)
        self._audit(request, response, request_id, key_id, version, variant)
        return response

    def _live_version(self) -> str:
        return self.routes.live.version if self.routes.live else "none"

    async def _send(self, request: Request, call: tuple, request_id: bytes):
        """(variant, version, answer): from whom the strategy chooses, a copy to whom it mirrors. A
        candidate that fails (5xx, a model refusal, or no answer) is counted against its guardrails and the request is
        answered by the live version instead; an unreachable live upstream is retried on the table's
        current live version, which may have changed meanwhile (a release in progress)."""
        decision = decide(self.routes, request.headers, request.body)
        if decision is None:
            raise NoVersion()
        if decision.body is not None:
            call = (call[0], call[1], call[2], decision.body)
        if decision.mirror is not None:
            self._mirror("candidate" if decision.variant == "live" else "live", decision.mirror, call, request_id)
        if decision.variant == "candidate":
            started = time.perf_counter()
            try:
                answer = await self._exchange(decision.answer, *call)
                if not answer.failed:
                    return "candidate", decision.answer.version, answer
            except (UpstreamUnavailable, UpstreamTimeout, ConnectionError):
                pass
            self.experiment.tally.add("candidate", time.perf_counter() - started, True)
            self._guard()
        for attempt in range(RETRIES):
            live = self.routes.live
            if live is None:
                raise NoVersion()
            try:
                return "live", live.version, await self._exchange(live, *call)
            except UpstreamUnavailable:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
        raise NoVersion()  # pragma: no cover - the loop returns or raises

    # -- mirroring ---------------------------------------------------------------------------------------
    def _mirror(self, role: str, variant: Variant, call: tuple, request_id: bytes) -> None:
        """Queue a copy of the request for ``variant``; a full queue drops it (counted), never waits."""
        if self.mirrors is None or self.mirrors.full():
            self.experiment.tally.mirror_dropped += 1
            self.metrics.inc("deploykit_mirror_dropped_total")
            return
        self.mirrors.put_nowait((role, variant, call, request_id))

    async def _mirror_worker(self) -> None:
        while True:
            role, variant, call, request_id = await self.mirrors.get()
            path = call[1].split(b"?")[0].decode("latin-1")
            started = time.perf_counter()
            body, failed = b"", True
            try:
                answer = await self._exchange(variant, *call, timeout=MIRROR_TIMEOUT)
                status, body, failed = answer.status, answer.body, answer.failed
            except (UpstreamUnavailable, UpstreamTimeout, ConnectionError):
                status = 502
            except Exception:  # noqa: BLE001 - a copy must never take the worker down
                status = 500
            seconds = time.perf_counter() - started
            self.experiment.tally.add(role, seconds, failed, mirrored=True)
            self.experiment.keep(request_id, role, True, path, status, body)
            self.metrics.observe(variant.version, role, endpoint_label(path), status, seconds)

    # -- the canary's control loop ------------------------------------------------------------------------
    async def _control(self) -> None:
        while True:
            await asyncio.sleep(CONTROL_SECONDS)
            strategy = self.routes.strategy
            if self.routes.candidate is None or strategy.get("kind") != "canary" or strategy.get("state") != "running":
                continue
            if self._guard():
                continue
            step = self.experiment.next_step(strategy, time.time())
            if step is None:
                continue
            if step > 1.0:
                await self.promote(f"the last step (100% for {strategy['interval']:g} s) held its guardrails")
            else:
                self._set_traffic(step, strategy["step"] + 1)

    def _guard(self) -> bool:
        """Take a canary whose guardrails broke off at once; True if it did."""
        strategy = self.routes.strategy
        if strategy.get("kind") != "canary" or strategy.get("state") != "running" or self.routes.candidate is None:
            return False
        reason = self.experiment.broken(strategy)
        if reason is None:
            return False
        candidate = self.routes.candidate
        self.set_routes(Routes(self.name, live=self.routes.live, candidate=None,
                               strategy={**strategy, "traffic": 0.0, "state": "rolled back"}))
        self.experiment.record("guardrail", reason, version=candidate.version, traffic=0.0)
        asyncio.ensure_future(self.stop_version(candidate))
        return True

    def _set_traffic(self, traffic: float, step: int) -> None:
        strategy = {**self.routes.strategy, "traffic": traffic, "step": step, "step_started": time.time()}
        self.set_routes(Routes(self.name, live=self.routes.live, candidate=self.routes.candidate, strategy=strategy))
        self.experiment.record("step", f"the guardrails held for {strategy['interval']:g} s", traffic=traffic, step=step,
                               version=self.routes.candidate.version)

    async def promote(self, reason: str) -> dict:
        """The candidate becomes live; the old live version is retired once its requests are answered."""
        candidate, old = self.routes.candidate, self.routes.live
        if candidate is None:
            raise ValueError("there is no candidate to promote")
        strategy = self.routes.strategy  # kept, marked done: the report still says what the experiment was
        self.set_routes(Routes(self.name, live=candidate, candidate=None,
                               strategy={**strategy, "state": "promoted"} if strategy.get("kind") == "canary" else strategy))
        self.experiment.record("promote", reason, version=candidate.version, previous=old.version if old else None)
        if old is not None and old.instance != candidate.instance:
            for url in old.upstreams:
                await self.drain(url, 30.0)
            await self.stop_version(old)
        return self.status()

    async def end(self, reason: str) -> dict:
        """End the experiment: the candidate is removed, live keeps serving everything."""
        candidate = self.routes.candidate
        if candidate is None:
            raise ValueError("there is no candidate: no experiment runs")
        strategy = self.routes.strategy
        self.set_routes(Routes(self.name, live=self.routes.live, candidate=None,
                               strategy={**strategy, "state": "rolled back"} if strategy.get("kind") == "canary" else strategy))
        self.experiment.record("rollback", reason, version=candidate.version)
        for url in candidate.upstreams:
            await self.drain(url, 30.0)
        await self.stop_version(candidate)
        return self.status()

    async def stop_version(self, variant: Variant) -> None:
        """Stop a version that has no traffic: the supervisor's child, or the version itself is asked to exit."""
        if self.supervisor is not None:
            await self.supervisor.stop(variant.instance)
            return
        for address in [a for url in variant.upstreams for a in await self.resolver.now(url)]:  # every replica
            pool = self.pool(address)
            data = request_bytes("POST", b"/_deploykit/shutdown", [(INTERNAL_HEADER, self._token)], b"",
                                 f"{pool.host}:{pool.port}".encode())
            try:
                await pool.request(data, 10.0)
            except (UpstreamUnavailable, UpstreamTimeout, ConnectionError):
                pass  # already gone

    async def _exchange(self, variant: Variant, method: str, target: bytes, headers: list, body: bytes,
                        timeout: float = TIMEOUT):
        url = variant.next_upstream()
        address = self.resolver.pick(url)
        pool = self.pool(address)
        data = request_bytes(method, target, headers, body, f"{pool.host}:{pool.port}".encode())
        self.inflight[url] = self.inflight.get(url, 0) + 1
        try:
            return await pool.request(data, timeout)
        except UpstreamUnavailable:
            self.resolver.failed(address)  # a replica going away: the retry goes to another
            raise
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
            starts = routes.candidate is not None and (self.routes.candidate is None
                                                       or routes.candidate.instance != self.routes.candidate.instance)
            if starts:
                self.experiment.restart()
                routes.strategy = {**routes.strategy, "started": time.time(), "step_started": time.time()}
            self.set_routes(routes)
            if payload.get("event"):
                self.experiment.record(**payload["event"])
            return 200, self.status()
        if (method, what) == ("PUT", "settings"):
            return 200, self.configure(**{k: payload[k] for k in ("capture", "auth", "audit") if k in payload})
        if (method, what) == ("GET", "experiment"):
            return 200, self.experiment.report(self.routes)
        if (method, what) == ("POST", "promote"):
            return 200, await self.promote(str(payload.get("reason", "promoted by the control plane")))
        if (method, what) == ("POST", "end"):
            return 200, await self.end(str(payload.get("reason", "rolled back by the control plane")))
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
                  "inflight": {url: n for url, n in self.inflight.items() if n},
                  "addresses": dict(self.resolver.addresses)}  # the replicas each upstream name stands for now
        if self.supervisor is not None:
            status["versions"] = self.supervisor.describe()
        return status

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.capture.close()
        if self.audit is not None:
            self.audit.close()
