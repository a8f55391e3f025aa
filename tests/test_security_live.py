"""API keys, rate limits and the audit trail against a live local deployment (its front enforces them)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

import deploykit
from deploykit._front import audit as _format
from deploykit._security import audit

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def guarded(churn_package):
    dep = deploykit.deploy(churn_package, name="guarded", auth=True, verbose=False)
    yield dep
    dep.stop()


def _post(url: str, path: str, rows: list, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}{path}", json={"instances": rows}, headers=headers, timeout=30)


def test_keys_scopes_and_revocation(guarded, churn_package):
    rows = churn_package.sample_rows()
    missing = _post(guarded.url, "/predict", rows)
    assert missing.status_code == 401 and set(missing.json()) == {"error", "details"} and "API key" in missing.json()["error"]
    assert httpx.get(f"{guarded.url}/livez").status_code == 200 and httpx.get(f"{guarded.url}/readyz").status_code == 200
    predictor = deploykit.keys.create("guarded", "predict")
    assert predictor.token.startswith(f"dk_{predictor.id}_")
    assert _post(guarded.url, "/predict", rows, predictor.token).status_code == 200
    assert _post(guarded.url, "/predict_proba", rows, predictor.token).status_code == 200
    wrong = _post(guarded.url, "/explain", rows, predictor.token)
    assert wrong.status_code == 403 and "lacks the scope" in wrong.json()["error"]
    assert httpx.get(f"{guarded.url}/nowhere", headers={"authorization": f"Bearer {predictor.token}"}).status_code == 403
    bad = _post(guarded.url, "/predict", rows, predictor.token[:-2] + "xx")
    assert bad.status_code == 401
    deploykit.keys.revoke("guarded", predictor.id)
    assert _post(guarded.url, "/predict", rows, predictor.token).status_code == 401
    # the deployment's own client (this notebook) has a key of its own: its calls keep working
    assert len(guarded.predict(rows)) == len(rows)
    text = httpx.get(f"{guarded.url}/metrics", headers={"authorization": f"Bearer {guarded._client.token}"}).text
    assert 'deploykit_auth_rejected_total{name="guarded",reason="missing"}' in text


def test_a_rate_limit_answers_429(guarded, churn_package):
    rows = churn_package.sample_rows()
    limited = deploykit.keys.create("guarded", "predict", rate=2, burst=2)
    answers = [_post(guarded.url, "/predict", rows, limited.token) for _ in range(6)]
    codes = [a.status_code for a in answers]
    assert codes[:2] == [200, 200] and 429 in codes
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1 and "rate limit" in refused.json()["error"]


def test_the_audit_trail_records_requests_and_detects_a_flipped_byte(guarded, churn_package):
    rows = churn_package.sample_rows()
    reader = deploykit.keys.create("guarded", "predict")
    ids = [_post(guarded.url, "/predict", rows, reader.token).headers["x-request-id"] for _ in range(5)]
    verdict = audit.verify("guarded")
    assert verdict.ok, verdict
    records = [json.loads(line) for line in audit.log_path("guarded").read_text().splitlines() if line.strip()]
    requests = {r["request_id"]: r for r in records if r.get("kind") == "request"}
    for request_id in ids:
        record = requests[request_id]
        assert record["key_id"] == reader.id and record["version"] == guarded.version and record["status"] == 200
        assert len(record["input_sha256"]) == 64 and "instances" not in json.dumps(record)  # digests, never values
    assert any(r.get("kind") == "action" and r["action"] == "deploy" for r in records)
    frame = guarded.audit()
    assert set(ids) <= set(frame["request_id"].dropna())
    copy = audit.log_path("guarded").with_name("flipped.jsonl")
    data = bytearray(audit.log_path("guarded").read_bytes())
    at = data.index(ids[2].encode()) + 3
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    copy.write_bytes(bytes(data))
    broken = _format.verify_file(copy, "guarded", audit.audit_public_keys())
    record = next(r for r in records if r.get("request_id") == ids[2])
    assert not broken.ok and broken.broken == record["seq"] and broken.reason


def test_a_killed_front_loses_no_acknowledged_audit_record(churn_package):
    dep = deploykit.deploy(churn_package, name="killed", verbose=False)
    rows = churn_package.sample_rows()
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=dep.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/predict", json={"instances": rows})
                except httpx.HTTPError:
                    return
                if answer.status_code == 200:
                    acknowledged.append(answer.headers["x-request-id"])

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 200:
        time.sleep(0.05)
    os.kill(dep.front.details["pid"], signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(20)
    logged = {json.loads(line).get("request_id") for line in audit.log_path("killed").read_text().splitlines()
              if line.strip() and line.startswith("{")}
    assert set(acknowledged) <= logged, len(set(acknowledged) - logged)
    deploykit.deployments()  # the dead front is noticed and forgotten
    assert "killed" not in [d.name for d in deploykit.deployments()]
