"""A fake Kubernetes API server for request-shape tests: it records every request (verb, path, query,
content type, JSON body) and answers just enough for the client to carry on. It checks nothing a real
API server would; tests assert on what the client sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeApiServer:
    def __init__(self, *, rollout=("progressing", "complete"), missing=()) -> None:
        self.requests: list[dict] = []
        self.rollout = list(rollout)  # what successive status reads report; the last one repeats
        self.missing = set(missing)   # plural names whose DELETE answers 404
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path) -> str:
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "other",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "t0ken"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}},
                         {"name": "other", "context": {"cluster": "fake", "user": "tester"}}],
        }))
        return str(path)

    def _answer(self, method: str, path: str, body) -> tuple[int, object]:
        parts = path.strip("/").split("/")
        if method == "PATCH":
            return 200, {**body, "metadata": {**body["metadata"], "generation": 1}}
        if method == "DELETE":
            return (404, {"kind": "Status", "code": 404, "message": "not found"}) if parts[-2] in self.missing \
                else (200, {"metadata": {"name": parts[-1]}})  # the deleted object (or a Status, by kind)
        if path.endswith("/status") and "deployments" in parts:
            return 200, self._deployment(parts[-2])
        if "inferenceservices" in parts:
            ready = self._next_rollout() == "complete"
            return 200, {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                         "metadata": {"name": parts[-1]}, "spec": {"predictor": {"minReplicas": 2}},
                         "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}
        if parts[-1] == "pods":
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                         "items": [{"metadata": {"name": f"churn-abc{i}"}} for i in (1, 0)]}
        if parts[-1] == "log":
            return 200, f"log of {parts[-2]}\nline 2\n"
        return 404, {"kind": "Status", "code": 404, "message": f"fake server has no {path}"}

    def _next_rollout(self) -> str:
        return self.rollout.pop(0) if len(self.rollout) > 1 else self.rollout[0]

    def _deployment(self, name: str) -> dict:
        state = self._next_rollout()
        updated = 2 if state == "complete" else 1
        status = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": updated, "readyReplicas": updated,
                  "availableReplicas": updated}
        if state == "failed":
            status["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                     "message": f"ReplicaSet \"{name}-5d9\" has timed out progressing."}]
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "generation": 1},
                "spec": {"replicas": 2, "selector": {"matchLabels": {}}, "template": {}}, "status": status}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append({"method": self.command, "path": split.path, "query": parse_qs(split.query),
                                      "content_type": self.headers.get("Content-Type"),
                                      "authorization": self.headers.get("Authorization"), "body": body})
                status, answer = fake._answer(self.command, split.path, body)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

        return Handler
