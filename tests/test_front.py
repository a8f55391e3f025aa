"""The front (router) as a real process, in front of small upstream servers made here.

The upstreams are plain HTTP servers that echo what they received, so these tests see exactly what
the front forwards; the front itself runs as it does for a deployment (``python -I -m
deploykit._front.serve``). Releases through real `bentoml serve` versions are in tests/test_release.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from deploykit._front.metrics import Metrics
from deploykit._front.routes import Routes, RoutesError
from deploykit._targets.front import FrontClient
from deploykit._targets.local import free_port

TOKEN = "test-token"


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received; ``?status=N`` and ``?sleep=S`` shape the answer."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        query = dict(part.split("=") for part in self.path.partition("?")[2].split("&") if "=" in part)
        time.sleep(float(query.get("sleep", 0)))
        payload = json.dumps({"upstream": self.server.label, "method": self.command, "path": self.path,
                              "body": body.decode(errors="replace"), "headers": dict(self.headers)}).encode()
        self.send_response(int(query.get("status", 200)))
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-upstream", self.server.label)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


def _upstream(label: str) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.label = label
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _table(version: str, upstream: str, instance: str = "") -> dict:
    return {"format": 1, "name": "t", "live": {"version": version, "upstreams": [upstream], "instance": instance},
            "candidate": None, "strategy": {"kind": "replace"}}


@pytest.fixture
def front(tmp_path):
    port = free_port()
    env = {**os.environ, "DEPLOYKIT_ADMIN_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-I", "-m", "deploykit._front.serve", "--name", "t", "--state-dir",
                             str(tmp_path), "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = FrontClient("t", f"http://127.0.0.1:{port}", TOKEN, target="test")
    client.wait_ready(20, exited=lambda: proc.poll() is not None)
    client.proc = proc
    yield client
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def upstreams():
    made = [_upstream("a"), _upstream("b")]
    yield [url for _, url in made]
    for server, _ in made:
        server.shutdown()


def test_forwards_and_labels_every_answer(front, upstreams):
    front.set_routes(_table("3", upstreams[0], "v3-abc"))
    response = httpx.post(f"{front.url}/predict?x=1", content=b'{"instances": [1]}',
                          headers={"content-type": "application/json", "x-custom": "kept"})
    seen = response.json()
    assert response.status_code == 200 and seen["upstream"] == "a"
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/predict?x=1", '{"instances": [1]}')
    assert seen["headers"]["x-custom"] == "kept" and "x-deploykit-admin" not in {k.lower() for k in seen["headers"]}
    assert response.headers["x-deploykit-version"] == "3" and response.headers["x-deploykit-variant"] == "live"
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32 and seen["headers"]["x-request-id"] == request_id  # the version sees the same id
    # a client's own request id is kept; a status and body from the version pass through untouched
    answer = httpx.post(f"{front.url}/predict?status=422", content=b"{}", headers={"x-request-id": "abc-123"})
    assert answer.status_code == 422 and answer.json()["upstream"] == "a" and answer.headers["x-request-id"] == "abc-123"
    assert httpx.get(f"{front.url}/schema").json()["method"] == "GET"
    head = httpx.head(f"{front.url}/schema")
    assert head.status_code == 200 and head.content == b"" and head.headers["x-deploykit-version"] == "3"


def test_errors_have_the_documented_shape(front, upstreams):
    empty = httpx.post(f"{front.url}/predict", content=b"{}")
    assert empty.status_code == 503 and empty.headers["retry-after"] == "5"
    assert set(empty.json()) == {"error", "details"} and "no version serving" in empty.json()["error"]
    front.set_routes(_table("1", f"http://127.0.0.1:{free_port()}"))  # nothing listens there
    down = httpx.post(f"{front.url}/predict", content=b"{}")
    assert down.status_code == 502 and "unreachable" in down.json()["error"] and down.json()["details"] == []
    # the admin API: a token, known calls, valid tables
    assert httpx.get(f"{front.url}/_deploykit/status").status_code == 401
    assert httpx.get(f"{front.url}/_deploykit/status", headers={"x-deploykit-admin": "wrong"}).status_code == 401
    with pytest.raises(Exception, match="refused GET nothing"):
        front.call("GET", "nothing")
    with pytest.raises(Exception, match="not http://HOST:PORT"):
        front.set_routes(_table("1", "ftp://somewhere"))


def test_http_limits_and_malformed_requests(front, upstreams):
    front.set_routes(_table("1", upstreams[0]))
    host, port = "127.0.0.1", int(front.url.rsplit(":", 1)[1])

    def raw(data: bytes) -> bytes:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    assert raw(b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge_header = b"GET /schema HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n"
    assert raw(huge_header).startswith(b"HTTP/1.1 431 ")
    too_big = raw(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n")
    assert too_big.startswith(b"HTTP/1.1 413 ") and b'"error"' in too_big
    # a chunked body arrives whole; two pipelined requests are answered in order on one connection
    chunked = raw(b"POST /predict HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 200 ") and b'"body": "hello world"' in chunked
    pipelined = raw(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /second HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert pipelined.count(b"HTTP/1.1 200 ") == 2 and pipelined.index(b"/first") < pipelined.index(b"/second")


def test_switching_versions_under_load_loses_nothing(front, upstreams):
    """Requests in flight finish on the old upstream; new ones go to the new; draining waits for them."""
    front.set_routes(_table("1", upstreams[0]))
    results: list = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{front.url}/predict?sleep=0.02", content=b"{}")
                    results.append((r.status_code, r.headers.get("x-deploykit-version"), r.json()["upstream"]))
                except httpx.HTTPError as exc:
                    results.append((0, repr(exc), ""))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    front.set_routes(_table("2", upstreams[1]))
    assert front.drain(upstreams[0], timeout=10)  # the requests v1 was answering are done
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert results and all(status == 200 for status, _, _ in results), [r for r in results if r[0] != 200][:3]
    assert {(v, u) for _, v, u in results} == {("1", "a"), ("2", "b")}  # each answer labelled by who gave it
    assert results[-1][1] == "2"
    status = front.status()
    assert status["routes"]["generation"] == 2 and status["inflight"] == {}


def test_a_vanished_upstream_is_retried_on_the_live_version(front, upstreams, tmp_path):
    """A request chosen for an upstream that went away is sent again to the table's live version."""
    front.set_routes(_table("1", f"http://127.0.0.1:{free_port()}"))
    answers = []
    thread = threading.Thread(target=lambda: answers.append(httpx.post(f"{front.url}/predict", content=b"{}", timeout=10)))
    thread.start()
    time.sleep(0.02)  # the request is retrying against the dead upstream
    front.set_routes(_table("2", upstreams[1]))
    thread.join()
    assert answers[0].status_code == 200 and answers[0].headers["x-deploykit-version"] == "2"


def test_metrics_and_the_routing_table_survive_a_restart(front, upstreams, tmp_path):
    front.set_routes(_table("7", upstreams[0], "v7-x"))
    for _ in range(3):
        httpx.post(f"{front.url}/predict", content=b"{}")
    httpx.post(f"{front.url}/predict?status=422", content=b"{}")
    (tmp_path / "monitor.prom").write_text('deploykit_drift_verdict{name="t",version="7"} 0\n')
    text = httpx.get(f"{front.url}/metrics").text
    assert 'deploykit_requests_total{name="t",version="7",variant="live",endpoint="/predict",code="200"} 3' in text
    assert 'code="422"} 1' in text
    assert 'deploykit_request_duration_seconds_count{name="t",version="7",variant="live",endpoint="/predict"} 4' in text
    assert 'deploykit_drift_verdict{name="t",version="7"} 0' in text  # the monitor's series, appended
    assert json.loads((tmp_path / "routes.json").read_text())["live"]["instance"] == "v7-x"
    restarted = subprocess.Popen([sys.executable, "-I", "-m", "deploykit._front.serve", "--name", "t", "--state-dir",
                                  str(tmp_path), "--port", str(free_port())], env={**os.environ, "DEPLOYKIT_ADMIN_TOKEN": "x"})
    try:
        again = FrontClient("t", f"http://127.0.0.1:{restarted.args[-1]}", "x")
        again.wait_ready(20)
        assert again.routes()["live"]["version"] == "7"  # the table was persisted
    finally:
        restarted.terminate()
        restarted.wait(10)


def test_routing_table_validation_and_metrics_rendering():
    routes = Routes.from_dict(_table("1", "http://h:1"))
    assert routes.live.version == "1" and routes.upstreams() == {"http://h:1"}
    for bad, message in ((_table("1", "h:1"), "not http://HOST:PORT"), ({**_table("1", "http://h:1"), "format": 9}, "format"),
                         ({**_table("1", "http://h:1"), "strategy": {"kind": "mystery"}}, "strategy 'mystery'"),
                         ({"format": 1, "live": {"upstreams": []}}, "live must be")):
        with pytest.raises(RoutesError, match=message):
            Routes.from_dict(bad)
    metrics = Metrics("m")
    metrics.observe("1", "live", "/predict", 200, 0.0004)
    metrics.observe("1", "live", "/predict", 200, 3.0)
    metrics.inc("deploykit_mirror_dropped_total", 2)
    text = metrics.render().decode()
    assert 'le="0.0005"} 1' in text and 'le="5.0"} 2' in text and 'le="+Inf"} 2' in text
    assert 'deploykit_mirror_dropped_total{name="m"} 2' in text and "# TYPE deploykit_mirror_dropped_total counter" in text
