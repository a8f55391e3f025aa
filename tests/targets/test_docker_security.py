"""API keys and the audit trail on the docker target: published beyond localhost, keys are on by default."""

from __future__ import annotations

import json

import httpx
import pytest

import deploykit
from deploykit._security import audit

pytestmark = pytest.mark.docker


def test_a_front_published_on_every_interface_asks_for_keys_and_audits(churn_package, base_image, docker_engine):
    dep = deploykit.deploy(churn_package, target="docker", name="dk-guarded", host="0.0.0.0", verbose=False)
    try:
        rows = churn_package.sample_rows()
        refused = httpx.post(f"{dep.url}/predict", json={"instances": rows}, timeout=30)
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
        assert httpx.get(f"{dep.url}/readyz", timeout=10).status_code == 200
        key = deploykit.keys.create("dk-guarded", "predict")  # written by root here, read by the front's user
        answer = httpx.post(f"{dep.url}/predict", json={"instances": rows}, timeout=30,
                            headers={"authorization": f"Bearer {key.token}"})
        assert answer.status_code == 200, answer.text
        assert len(dep.predict(rows)) == len(rows)  # this process's own key
        request_id = answer.headers["x-request-id"]
        records = [json.loads(line) for line in audit.log_path("dk-guarded").read_text().splitlines() if line.strip()]
        mine = [r for r in records if r.get("request_id") == request_id]
        assert len(mine) == 1 and mine[0]["key_id"] == key.id and mine[0]["status"] == 200
        assert any(r.get("kind") == "request" and r["status"] == 401 for r in records)  # refusals are audited too
        dep.stop()  # a host-side action appended after the container's records, to the same chain
        verdict = audit.verify("dk-guarded")
        assert verdict.ok, verdict
    finally:
        dep.stop()
