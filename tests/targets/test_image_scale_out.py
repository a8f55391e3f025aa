"""The model image beyond `deploykit deploy`: batch scoring inside it, serving under the Kubernetes
manifests' security settings, and pushing it to a registry (here: one that is not there)."""

from __future__ import annotations

import json
import time

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

import deploykit
from deploykit._kubernetes.manifests import SCRATCH, documents, settings_for
from tests.targets.conftest import TEST_LABEL

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image(churn_package, base_image):
    return churn_package.build_image(verbose=False)


def test_the_image_scores_a_parquet_file_like_deploykit_batch(image, churn_package, churn, docker_engine, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the image runs as uid 10001
    frame = pd.concat([churn[1]] * 3, ignore_index=True)
    frame.loc[4, "contract"] = "lifetime"
    frame.to_parquet(data / "in.parquet")
    logs = docker_engine.containers.run(image.tag, ["batch", "/data/in.parquet", "/data/out.parquet", "--chunk-rows", "100"],
                                        volumes={str(data): {"bind": "/data", "mode": "rw"}}, network_mode="none",
                                        remove=True, labels={TEST_LABEL: "true"}, stdout=True, stderr=False)
    summary = json.loads(logs.decode().strip().splitlines()[-1])
    assert (summary["rows"], summary["rejected_rows"]) == (len(frame), 1)
    local = deploykit.batch(churn_package, data / "in.parquet", tmp_path / "local.parquet", chunk_rows=100, progress=False)
    assert pq.read_table(data / "out.parquet").equals(pq.read_table(tmp_path / "local.parquet"))
    assert pq.read_table(data / "out.rejects.parquet").equals(pq.read_table(tmp_path / "local.rejects.parquet"))
    assert local.rejected_rows == 1


def test_the_image_serves_under_the_manifests_security_context(image, churn_package, churn, docker_engine):
    """What the Deployment asks of a pod, as far as Docker can say it: uid 10001, read-only root
    filesystem with the manifests' scratch volumes as tmpfs, every capability dropped, no new privileges."""
    container = documents(settings_for(churn_package, image=image.tag))[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    running = docker_engine.containers.run(
        image.tag, detach=True, read_only=True, user=str(container["securityContext"]["runAsUser"]),
        tmpfs={volume["path"]: "mode=1777" for volume in SCRATCH}, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], ports={"3000/tcp": ("127.0.0.1", None)}, labels={TEST_LABEL: "true"})
    try:
        running.reload()
        port = running.attrs["NetworkSettings"]["Ports"]["3000/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("not ready in 90 s under a read-only root filesystem:\n" + running.logs().decode()[-2000:])
        rows = churn_package.sample_rows()[:2]
        answer = httpx.post(f"{url}/predict", json={"instances": rows}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        assert httpx.get(f"{url}/livez", timeout=2).status_code == 200
    finally:
        running.remove(force=True)


def test_push_is_attempted_to_the_named_repository_and_its_failure_reported(image, docker_engine):
    """No registry runs here: push to a port where nothing listens. The engine's own output shows it
    pushed the repository and tag asked for, and the failure comes back as a DeploymentError."""
    from deploykit._kubernetes.push import push_image

    reference = "127.0.0.1:9/deploykit-test/churn:1"
    lines: list[str] = []
    try:
        with pytest.raises(deploykit.DeploymentError, match=r"pushing 127.0.0.1:9/deploykit-test/churn:1 failed: .*127\.0\.0\.1:9") as err:
            push_image(image.tag, reference, on_line=lines.append)
        assert "The push refers to repository [127.0.0.1:9/deploykit-test/churn]" in lines
        assert err.value.target == "kubernetes"
    finally:
        docker_engine.images.remove(reference)
