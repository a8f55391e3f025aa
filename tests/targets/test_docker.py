"""The Docker image build and the docker target, against a real Docker engine."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

import deploykit
from deploykit._docker import build as _build
from deploykit._docker.engine import LABEL
from tests.helpers.load import Hammer
from tests.helpers.packages import broken_copy

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image(churn_package, base_image):
    return churn_package.build_image(verbose=False)


def test_image_metadata(image, churn_package, docker_engine):
    found = docker_engine.images.get(image.tag)
    labels, config = found.labels, found.attrs["Config"]
    assert image.tag == f"deploykit/churn:{churn_package.version}"
    assert labels["org.opencontainers.image.title"] == "churn"
    assert labels["org.opencontainers.image.version"] == churn_package.version
    assert labels["org.opencontainers.image.created"].startswith("20")
    assert labels[f"{LABEL}.model.sha256"] == churn_package.manifest["artifacts"]["model"]["sha256"]
    assert labels[f"{LABEL}.version"] == deploykit.__version__
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert labels.get("org.opencontainers.image.revision") == (commit or None)
    assert config["User"] == str(_build.UID)  # non-root
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Entrypoint"] == ["python", "-m", "deploykit_runtime.entrypoint"] and config["Cmd"][0] == "serve"
    assert "deploykit" in repr(image) and image.tag in image._repr_html_()


def test_layers_are_deps_then_code_then_model(image, docker_engine):
    history = [h for h in docker_engine.api.history(image.tag) if h["Size"] > 0]
    created = [h["CreatedBy"] for h in history]
    model_layer, code_layer = created[0], created[1]
    assert "COPY" in model_layer and model_layer.rstrip().endswith("in /home/deploykit/bento/")  # bento/ with the model
    assert "COPY" in code_layer and code_layer.rstrip().endswith("in /home/deploykit/bento/src/")
    deps = docker_engine.images.get(image.deps_image)
    assert deps.id in [h["Id"] for h in docker_engine.api.history(image.tag)]  # built on the deps image


def test_a_new_model_rebuilds_only_its_own_layer(churn_package, image, churn, docker_engine):
    from deploykit.demo import churn_pipeline

    X_train, X_test, y_train, _ = churn
    other = churn_pipeline().set_params(model__n_estimators=12, model__random_state=7).fit(X_train, y_train)
    pkg = deploykit.package(other, name="churn", X_train=X_train, y_train=y_train, X_test=X_test, verbose=False)
    assert pkg.manifest["lock"] == churn_package.manifest["lock"]
    rebuilt = pkg.build_image(verbose=False)
    assert rebuilt.deps_reused and rebuilt.deps_image == image.deps_image
    code_step = next(i for i, line in enumerate(rebuilt.steps) if "COPY code/" in line)
    assert rebuilt.steps[code_step + 1].strip().startswith("---> Using cache")  # the service code layer is shared
    old_layers = {h["Id"] for h in docker_engine.api.history(image.tag)}
    new_layers = [h for h in docker_engine.api.history(rebuilt.tag) if h["Id"] not in old_layers and h["Size"] > 0]
    assert len(new_layers) == 1 and "COPY" in new_layers[0]["CreatedBy"]


def test_builds_have_no_network(docker_engine, base_image, tmp_path):
    """Every build runs with the network off: a step that reaches out fails, the wheel install succeeds."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN python3 -c \"import urllib.request; urllib.request.urlopen('http://deb.debian.org', timeout=5)\"\n"
    )
    with pytest.raises(deploykit.ImageBuildError, match="building deploykit-test/net:probe failed"):
        _build.docker_build(tmp_path, "deploykit-test/net:probe", labels={f"{LABEL}.managed": "true"}, on_line=lambda _: None)


def test_dependency_image_installs_offline_from_the_wheelhouse(docker_engine, base_image):
    from deploykit._docker.base import check_base_image

    base = check_base_image(base_image)
    lock = ["six==1.17.0"]
    tag, reused = _build.ensure_deps_image(lock, base, on_line=lambda _: None, verbose=False)
    out = docker_engine.containers.run(tag, ["python", "-c", "import six; print(six.__version__)"], remove=True, network_mode="none")
    assert out.decode().strip() == "1.17.0"
    assert _build.ensure_deps_image(lock, base, on_line=lambda _: None, verbose=False) == (tag, True)


def test_no_secrets_in_any_layer(churn_package, base_image, docker_engine, monkeypatch, tmp_path):
    secret = "dk-test-secret-4f9c1e"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\n# token {secret}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(pip_conf))
    materials = {"the environment's secret": secret.encode(), **_key_material()}
    built = churn_package.build_image(tag="deploykit-test/secrets:1", verbose=False)
    found = docker_engine.images.get(built.tag)
    assert not any(secret in value for value in found.attrs["Config"]["Env"] + list(found.labels.values()))
    saved = b"".join(found.save(named=False))
    layers = 0
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            if member.name.endswith("layer.tar"):  # unpack the layer: every file in it, by name
                layers += 1
                with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                    for item in layer.getmembers():
                        if item.isfile():
                            _assert_none_in(layer.extractfile(item).read(), materials, f"{member.name}:{item.name}")
            elif member.isfile():
                _assert_none_in(outer.extractfile(member).read(), materials, member.name)
    assert layers >= 3  # base, dependencies, service code and model
    docker_engine.images.remove(built.tag, force=True)


def _key_material() -> dict:
    """Issue 12: private keys (package signing, audit checkpoints) and an API key's secret, as bytes."""
    from cryptography.hazmat.primitives import serialization

    from deploykit._security import audit, keys, signing

    token = keys.create("churn", "predict").token
    found = {"an API key's secret": token.split("_", 2)[2].encode()}
    for what, path in (("the package signing key", signing.keys_dir() / "signing.key"), ("the audit key", audit.audit_key_path())):
        pem = path.read_bytes()
        found[what] = b"".join(pem.splitlines()[1:-1])
        raw = serialization.load_pem_private_key(pem, None).private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        found[f"{what} (raw)"] = raw
    return found


def _assert_none_in(data: bytes, materials: dict, where: str) -> None:
    for what, material in materials.items():
        assert material not in data, f"{what} found in {where}"


def test_base_image_checks(docker_engine, base_image, tmp_path, monkeypatch):
    from deploykit._docker.base import check_base_image, resolve_base_image

    with pytest.raises(deploykit.ImageBuildError, match="deploykit base-image"):
        check_base_image("deploykit-test/no-such-image:1")
    # a base whose python3 is another minor version is refused before anything is built
    (tmp_path / "python3").write_text(
        "#!/bin/sh\necho '{\"python\": \"3.9\", \"python_full\": \"3.9.2\", \"libc\": \"2.31\", \"machine\": \"x86_64\"}'\n"
    )
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nCOPY python3 /usr/local/bin/python3\nRUN chmod +x /usr/local/bin/python3\n")
    _build.docker_build(tmp_path, "deploykit-test/py39:1", labels={f"{LABEL}.managed": "true"}, on_line=lambda _: None)
    with pytest.raises(deploykit.ImageBuildError, match="has Python 3.9 but this notebook runs Python 3.11"):
        check_base_image("deploykit-test/py39:1")
    docker_engine.images.remove("deploykit-test/py39:1", force=True)
    # precedence: argument, environment, project config, default
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploykit.toml").write_text('base_image = "from-config:1"\n')
    monkeypatch.setenv("DEPLOYKIT_BASE_IMAGE", "from-env:1")
    assert resolve_base_image("from-arg:1") == "from-arg:1"
    assert resolve_base_image() == "from-env:1"
    monkeypatch.delenv("DEPLOYKIT_BASE_IMAGE")
    assert resolve_base_image() == "from-config:1"
    (tmp_path / "deploykit.toml").unlink()
    (tmp_path / "pyproject.toml").write_text('[tool.deploykit]\nbase_image = "from-pyproject:1"\n')
    assert resolve_base_image() == "from-pyproject:1"


def test_interrupting_a_build_stops_it_cleanly(docker_engine, base_image, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nRUN sleep 30\nRUN echo done\n")
    before = {c.id for c in docker_engine.containers.list(all=True)}

    def interrupt(line):
        if line.startswith("Step 2/"):
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        _build.docker_build(tmp_path, "deploykit-test/interrupted:1", labels={}, on_line=interrupt)
    assert time.monotonic() - started < 20
    with pytest.raises(Exception):
        docker_engine.images.get("deploykit-test/interrupted:1")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:  # the engine cancels the step and removes its container
        leftover = [c for c in docker_engine.containers.list(all=True) if c.id not in before]
        if not leftover:
            break
        time.sleep(1)
    assert not leftover


def test_unreachable_engine_is_a_clear_error(monkeypatch):
    from deploykit._docker import engine

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    engine._client.cache_clear()
    try:
        with pytest.raises(deploykit.DockerUnavailableError, match="cannot reach the Docker engine.*target='local'"):
            engine.client()
    finally:
        monkeypatch.undo()
        engine._client.cache_clear()


def test_docker_target_serves_replaces_and_rolls_back(churn_package, churn_model, churn, image, tmp_path, docker_engine):
    X_test = churn[1].iloc[:5]
    rows = churn_package.sample_rows()
    dep = deploykit.deploy(churn_package, target="docker", name="dk-docker", verbose=False)
    try:
        assert dep.target == "docker" and dep.health()["ready"]
        assert dep.predict(X_test).tolist() == churn_model.predict(X_test).tolist()
        # a compiled path differs by at most what the package measured on every test row (these among them)
        fast = churn_package.manifest.serving.fast_path
        bound = max(1e-9, fast["max_difference"] + 1e-12) if fast and fast.get("enabled") else 1e-9
        assert np.abs(dep.predict_proba(X_test) - churn_model.predict_proba(X_test)).max() <= bound
        explanation = dep.explain(X_test.iloc[:1])
        assert np.allclose(explanation.base_values + explanation.values.sum(1), explanation.outputs, atol=1e-6)
        assert "Uvicorn running" in dep.logs() or "Starting production" in dep.logs()
        url = dep.url

        # a failed release: the old version keeps serving, clients see no failure, the error shows its logs
        with Hammer(url, rows) as failed_release:
            time.sleep(0.5)
            with pytest.raises(deploykit.DeploymentError, match="IntegrityError") as info:
                deploykit.deploy(broken_copy(churn_package, tmp_path / "broken"), target="docker", name="dk-docker",
                                 verbose=False)
            time.sleep(0.5)
        assert "will not be loaded" in info.value.logs
        assert failed_release.failed == 0 and failed_release.ok > 0, failed_release.errors[:3]
        assert set(failed_release.versions) == {churn_package.version}
        assert len(docker_engine.containers.list(filters={"label": f"{LABEL}.name=dk-docker"})) == 2  # front + v1

        # a good release takes over the same URL with zero failed requests
        with Hammer(url, rows) as good_release:
            time.sleep(0.5)
            dep2 = deploykit.deploy(churn_package, target="docker", name="dk-docker", verbose=False)
            time.sleep(1.0)
        assert dep2.url == url and dep.stopped
        assert good_release.failed == 0 and good_release.ok > 0, good_release.errors[:3]
        models = docker_engine.containers.list(filters={"label": [f"{LABEL}.name=dk-docker", f"{LABEL}.role=model"]})
        assert [c.id for c in models] == [dep2.handle.container.id]

        # a new Python process (a restarted kernel) finds it from the engine's labels
        code = "import deploykit; d=[d for d in deploykit.deployments() if d.name=='dk-docker'][0]; print(d.url, d.version, d.target)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ).stdout.split()
        assert out == [url, churn_package.version, "docker"]
    finally:
        for d in deploykit.deployments():
            if d.name == "dk-docker":
                d.stop()
    assert not docker_engine.containers.list(all=True, filters={"label": f"{LABEL}.name=dk-docker"})
    assert not docker_engine.networks.list(filters={"label": f"{LABEL}.name=dk-docker"})
