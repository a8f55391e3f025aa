"""Kubernetes and KServe manifests, validated offline (no cluster runs here), and the apply path's
requests against a recording fake API server. docs/kubernetes.md says what has run against a cluster."""

from __future__ import annotations

import copy

import pytest
import yaml

import deploykit
from deploykit._kubernetes import apply as kube_apply
from deploykit._kubernetes.manifests import KINDS, documents, settings_for
from tests.helpers import kube
from tests.helpers.fake_kube import FakeApiServer

IMAGE = "registry.example.com/ml/churn:1"
VARIANTS = [
    ("kubernetes", {}),
    ("kubernetes", {"namespace": "ml", "replicas": 3, "ingress_host": "churn.example.com", "ingress_class": "nginx"}),
    ("kserve", {}),
    ("kserve", {"namespace": "ml", "kserve_mode": "Serverless", "cpu_limit": "1500m", "memory_limit": "3Gi"}),
]


@pytest.fixture(scope="module")
def pkg(churn_package):
    return churn_package


@pytest.mark.parametrize("kind,options", VARIANTS)
def test_every_generated_manifest_passes_the_offline_validators(pkg, kind, options):
    docs = documents(settings_for(pkg, image=IMAGE, **options), kind)
    assert [d["kind"] for d in docs] == (["InferenceService"] if kind == "kserve" else
                                         ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"]
                                         + (["Ingress"] if options.get("ingress_host") else []))
    for doc in docs:
        kube.check(doc)  # kubernetes-validate --strict 1.29..1.37, the client's (or KServe's) models, quantities


def test_the_deployment_says_what_the_issue_asks(pkg):
    dep = documents(settings_for(pkg, image=IMAGE, replicas=3))[0]
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == IMAGE and container["ports"][0]["containerPort"] == 3000
    assert (container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]) == (
        {"path": "/livez", "port": 3000}, {"path": "/readyz", "port": 3000})
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "runAsUser": 10001, "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp", "/home/deploykit/bentoml"} and all("emptyDir" in v for v in pod["volumes"])
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = documents(settings_for(pkg, image=IMAGE, replicas=3))[3]
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]


# -- golden tests: the validators catch broken manifests ----------------------------------------------------
def _container(doc: dict) -> dict:
    spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]["predictor"]
    return spec["containers"][0]


def _bad_quantity(doc):
    _container(doc)["resources"]["limits"]["memory"] = "2 GiB"


def _missing_probe_port(doc):
    del _container(doc)["readinessProbe"]["httpGet"]["port"]


def _unknown_field(doc):
    _container(doc)["readinessProb"] = _container(doc).pop("readinessProbe")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("breaks,expected", [
    (_bad_quantity, r"'2 GiB' is not a quantity"),
    (_missing_probe_port, r"httpGet.*(port|required)"),
    (_unknown_field, r"readinessProb"),
])
def test_the_validators_catch_broken_manifests(pkg, kind, breaks, expected):
    doc = copy.deepcopy(documents(settings_for(pkg, image=IMAGE), kind)[0])
    breaks(doc)
    with pytest.raises(kube.ManifestInvalid, match=expected):
        kube.check(doc)


def test_strict_schemas_catch_what_the_models_cannot_see(pkg):
    """kubernetes-validate, on its own, finds an unknown field and a missing port in every version."""
    doc = documents(settings_for(pkg, image=IMAGE))[0]
    for breaks in (_missing_probe_port, _unknown_field):
        broken = copy.deepcopy(doc)
        breaks(broken)
        errors = kube.schema_errors(broken)
        assert [e.split(":")[0] for e in errors] == kube.VERSIONS
    assert kube.schema_errors({**doc, "apiVersion": "apps/v1beta9"})  # no schema for a built-in group: an error


# -- writing them: Python, CLI, magic ---------------------------------------------------------------------
def test_manifests_writes_files_that_say_what_made_them(pkg, tmp_path):
    paths = deploykit.manifests(pkg, kind="kubernetes", image=IMAGE, out=tmp_path / "k8s", ingress_host="churn.example.com")
    assert [p.name for p in paths] == ["deployment.yaml", "service.yaml", "poddisruptionbudget.yaml",
                                       "horizontalpodautoscaler.yaml", "ingress.yaml"]
    for path in paths:
        text = path.read_text()
        assert text.startswith("# Generated by deploykit") and "templates/kubernetes/" in text
        kube.check(yaml.safe_load(text))


def test_the_cli_and_the_magic_write_manifests(pkg, tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from deploykit._cli import main

    assert main(["manifests", str(pkg.path), "--kind", "kserve", "--image", IMAGE, "-o", str(tmp_path / "cli"),
                 "--namespace", "ml"]) == 0
    assert "inferenceservice.yaml" in capsys.readouterr().out
    isvc = yaml.safe_load((tmp_path / "cli" / "inferenceservice.yaml").read_text())
    assert isvc["metadata"]["namespace"] == "ml" and _container(isvc)["image"] == IMAGE
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "deploykit")
    shell.user_ns["pkg"] = pkg
    paths = shell.run_line_magic("deploy", f"manifests pkg --image {IMAGE} -o {tmp_path / 'magic'} --replicas 4")
    assert yaml.safe_load(paths[0].read_text())["spec"]["replicas"] == 4


def test_unusable_settings_are_refused_before_anything_is_written(pkg, tmp_path):
    with pytest.raises(deploykit.ConfigError, match="memory_limit='2 GiB' is not a Kubernetes quantity"):
        deploykit.manifests(pkg, image=IMAGE, out=tmp_path, memory_limit="2 GiB")
    with pytest.raises(deploykit.ConfigError, match="kind='helm'"):
        deploykit.manifests(pkg, kind="helm", image=IMAGE, out=tmp_path)
    with pytest.raises(deploykit.ConfigError, match="unknown manifest option.*replica\\b"):
        deploykit.manifests(pkg, image=IMAGE, out=tmp_path, replica=2)
    assert not list(tmp_path.iterdir())


# -- the apply path, request shape only -------------------------------------------------------------------
def test_apply_sends_one_server_side_apply_per_object_then_watches_the_rollout(pkg, tmp_path, monkeypatch):
    monkeypatch.setattr(kube_apply, "POLL_SECONDS", 0.01)
    with FakeApiServer(rollout=("progressing", "progressing", "complete")) as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")
        state = kube_apply.apply(pkg, image=IMAGE, context="fake", namespace="ml", replicas=2, kubeconfig=config)
    assert state.ok and (state.ready, state.replicas) == (2, 2)
    assert state.applied == ["Deployment/churn", "Service/churn", "PodDisruptionBudget/churn", "HorizontalPodAutoscaler/churn"]
    patches = [r for r in api.requests if r["method"] == "PATCH"]
    assert [r["path"] for r in patches] == [
        "/apis/apps/v1/namespaces/ml/deployments/churn", "/api/v1/namespaces/ml/services/churn",
        "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/churn",
        "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/churn"]
    for request in patches:
        assert request["content_type"] == "application/apply-patch+yaml"
        assert request["query"] == {"fieldManager": ["deploykit"], "force": ["true"]}
        assert request["authorization"] == "Bearer t0ken"
        assert request["body"]["metadata"]["namespace"] == "ml"
        kube.check(request["body"])  # what reached the server is what the validators passed
    assert _container(patches[0]["body"])["image"] == IMAGE
    reads = [r for r in api.requests if r["method"] == "GET"]
    assert {r["path"] for r in reads} == {"/apis/apps/v1/namespaces/ml/deployments/churn/status"} and len(reads) == 3


def test_apply_reports_a_failed_rollout(pkg, tmp_path, monkeypatch):
    monkeypatch.setattr(kube_apply, "POLL_SECONDS", 0.01)
    with FakeApiServer(rollout=("progressing", "failed")) as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")
        with pytest.raises(deploykit.DeploymentError, match="rollout of ml/churn failed: ReplicaSet .* timed out"):
            kube_apply.apply(pkg, image=IMAGE, context="fake", namespace="ml", kubeconfig=config)


def test_apply_kserve_status_logs_and_stop(pkg, tmp_path, monkeypatch):
    monkeypatch.setattr(kube_apply, "POLL_SECONDS", 0.01)
    with FakeApiServer(rollout=("progressing", "complete"), missing={"ingresses"}) as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")
        state = kube_apply.apply(pkg, image=IMAGE, kind="kserve", context="fake", namespace="ml", kubeconfig=config)
        assert state.ok and state.applied == ["InferenceService/churn"]
        patch = api.requests[0]
        assert (patch["method"], patch["path"]) == ("PATCH", "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/churn")
        kube.check(patch["body"])
        api.requests.clear()
        assert kube_apply.status("churn", "ml", context="fake", kubeconfig=config).ok
        text = kube_apply.logs("churn", "ml", tail=20, context="fake", kubeconfig=config)
        assert text.splitlines()[0] == "==> churn-abc0 <==" and "log of churn-abc1" in text
        deleted = kube_apply.stop("churn", "ml", context="fake", kubeconfig=config)
    assert deleted == ["HorizontalPodAutoscaler/churn", "PodDisruptionBudget/churn", "Service/churn", "Deployment/churn"]
    listing = next(r for r in api.requests if r["path"] == "/api/v1/namespaces/ml/pods")
    assert listing["query"]["labelSelector"] == ["app.kubernetes.io/instance=churn"]
    logs = [r for r in api.requests if r["path"].endswith("/log")]
    assert [r["query"]["tailLines"] for r in logs] == [["20"], ["20"]]
    assert [r["path"].rsplit("/", 1)[0] for r in api.requests if r["method"] == "DELETE"] == [
        "/apis/networking.k8s.io/v1/namespaces/ml/ingresses", "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers",
        "/apis/policy/v1/namespaces/ml/poddisruptionbudgets", "/api/v1/namespaces/ml/services",
        "/apis/apps/v1/namespaces/ml/deployments"]


def test_apply_errors_name_the_context_and_the_server(pkg, tmp_path):
    with pytest.raises(deploykit.ConfigError, match="no usable kubeconfig for context nowhere"):
        kube_apply.apply(pkg, image=IMAGE, context="nowhere", kubeconfig=str(tmp_path / "missing"))
    with FakeApiServer() as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")
    # the server is gone: the client cannot connect
    with pytest.raises(deploykit.DeploymentError, match="cannot reach the Kubernetes API at http://127.0.0.1"):
        kube_apply.apply(pkg, image=IMAGE, context="fake", kubeconfig=config, timeout=1)


# -- the push path ----------------------------------------------------------------------------------------
def test_image_references_need_a_registry_and_a_tag():
    from deploykit._kubernetes.push import split_reference

    assert split_reference("registry.example.com:5000/ml/churn:3") == ("registry.example.com:5000/ml/churn", "3")
    for bad in ("churn:3", "registry.example.com/churn", "registry.example.com/churn@sha256:abc"):
        with pytest.raises(deploykit.ConfigError):
            split_reference(bad)


# -- target="kubernetes": deploy(), deployments(), rollback and stop through the same API as any target ------
def test_deploy_to_kubernetes_rolls_out_and_remembers_where(pkg, tmp_path, monkeypatch):
    monkeypatch.setattr(kube_apply, "POLL_SECONDS", 0.01)
    with FakeApiServer(rollout=("progressing", "complete")) as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")
        dep = deploykit.deploy(pkg, target="kubernetes", name="kchurn", image=IMAGE, push=False, context="fake",
                               namespace="ml", kubeconfig=config, ingress_host="churn.example.com", verbose=False)
        assert (dep.target, dep.version, dep.url) == ("kubernetes", pkg.version, "http://churn.example.com")
        patches = [r for r in api.requests if r["method"] == "PATCH"]
        assert [r["path"].rsplit("/", 2)[-2] for r in patches] == [
            "deployments", "services", "poddisruptionbudgets", "horizontalpodautoscalers", "ingresses"]
        assert _container(patches[0]["body"])["image"] == IMAGE
        # another process (a restarted kernel) finds it through the record and the cluster's status
        found = [d for d in deploykit.deployments() if d.name == "kchurn"]
        assert found and found[0].target == "kubernetes" and found[0].url == dep.url
        api.requests.clear()
        dep.stop()
        assert [r["path"].rsplit("/", 2)[-2] for r in api.requests if r["method"] == "DELETE"] == [
            "ingresses", "horizontalpodautoscalers", "poddisruptionbudgets", "services", "deployments"]
        assert "kchurn" not in [d.name for d in deploykit.deployments()]


def test_a_failed_rollout_and_unsupported_settings_are_refused(pkg, tmp_path, monkeypatch):
    monkeypatch.setattr(kube_apply, "POLL_SECONDS", 0.01)
    with FakeApiServer(rollout=("progressing", "failed")) as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")
        with pytest.raises(deploykit.DeploymentError, match="rollout of ml/kfail failed"):
            deploykit.deploy(pkg, target="kubernetes", name="kfail", image=IMAGE, push=False, context="fake",
                             namespace="ml", kubeconfig=config, verbose=False)
    with pytest.raises(deploykit.ConfigError, match="needs image='REGISTRY/NAME:TAG'"):
        deploykit.deploy(pkg, target="kubernetes", name="knoimage", verbose=False)
    with pytest.raises(deploykit.ConfigError, match="strategy='canary' runs two versions behind deploykit's front"):
        deploykit.deploy(pkg, target="kubernetes", name="kcanary", image=IMAGE, strategy="canary", verbose=False)
    with pytest.raises(deploykit.ConfigError, match=r"\['namespace'\] apply to target='kubernetes'"):
        deploykit.deploy(pkg, target="local", name="klocal", namespace="ml", verbose=False)
