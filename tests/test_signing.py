"""Signed packages (issue 12, point 3): every artifact's sha256 signed at packaging, checked at every use."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import deploykit
from deploykit._cli import main
from deploykit._runtime import signature as runtime_signature
from deploykit._security import signing


@pytest.fixture(scope="module")
def signed(churn):
    """A small package of its own: the tests below tamper with its folder and restore it."""
    from deploykit.demo import churn_pipeline

    X_train, X_test, y_train, y_test = churn
    model = churn_pipeline().set_params(model__n_estimators=8, model__max_depth=4).fit(X_train, y_train)
    return deploykit.package(model, name="signed", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                             explain=False, fast_path=False, verbose=False)


@pytest.fixture
def attacker_key(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = tmp_path / "attacker.key"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


class Restored:
    """Puts a package's files back as they were, whatever the test did to them."""

    def __init__(self, *roots: Path) -> None:
        self.saved = {p: p.read_bytes() for root in roots for p in Path(root).rglob("*") if p.is_file()}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for path, data in self.saved.items():
            path.write_bytes(data)


def _bento_src(pkg) -> Path:
    return pkg.bento_path / "src"


def test_packages_are_signed_with_the_users_key_made_on_first_use(signed):
    home = Path(os.environ["DEPLOYKIT_HOME"])
    key_file = home / "keys" / "signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert not key_file.resolve().is_relative_to(home / "packages") and not key_file.resolve().is_relative_to(home / "logs")
    own = runtime_signature.key_id(runtime_signature.raw_public_key(signing.public_key()))
    for root in (signed.path, _bento_src(signed)):
        document = json.loads((root / "model" / "signature.json").read_text())
        files = document["statement"]["files"]
        assert document["signature"]["key_id"] == own
        assert {"model/model.skops", "model/card.json", "model/sample.json", "deploykit_runtime/service.py"} <= set(files)
        assert files["model/model.skops"] == signed.manifest["artifacts"]["model"]["sha256"]
        assert files["model/card.json"] == signed.manifest["card"]["sha256"]
    assert signing.verify_package(signed) == own
    assert signing.public_key().startswith("-----BEGIN PUBLIC KEY-----")


def test_a_changed_byte_in_the_package_folders_model_is_refused_at_deploy(signed, capsys):
    model_file = signed.path / "model" / "model.skops"
    assert model_file == Path(os.environ["DEPLOYKIT_HOME"]) / "packages" / "signed" / signed.version / "model" / "model.skops"
    with Restored(signed.path):
        data = bytearray(model_file.read_bytes())
        data[len(data) // 2] ^= 0x01
        model_file.write_bytes(bytes(data))
        with pytest.raises(deploykit.IntegrityError, match=r"model/model.skops in .* was changed after packaging") as info:
            deploykit.deploy(deploykit.Package.load("signed"), verbose=False)
        assert info.value.path == str(model_file)
        assert main(["deploy", "signed"]) == 1  # the CLI, by package name
        assert "model/model.skops" in capsys.readouterr().err
        with pytest.raises(deploykit.IntegrityError, match="model/model.skops"):
            signed.build_image(verbose=False)  # checked before any image is built
    assert not [d for d in deploykit.deployments() if d.name == "signed"]


def _rewrite_card_and_its_hashes(pkg) -> None:
    """What the issue saw pass: a better AUC and a sign-off in card.json, its sha256 updated in both manifests."""
    for model_dir in (pkg.path / "model", _bento_src(pkg) / "model"):
        card_file = model_dir / "card.json"
        card = json.loads(card_file.read_text())
        card["evaluation"]["metrics"][0]["value"] = 0.99
        card.setdefault("approvals", []).append({"by": "chief risk officer", "decision": "approved"})
        card_file.write_text(json.dumps(card))
        sha = hashlib.sha256(card_file.read_bytes()).hexdigest()
        manifest_file = model_dir / "deploykit.json"
        manifest = json.loads(manifest_file.read_text())
        manifest["artifacts"]["card_json"]["sha256"] = manifest["card"]["sha256"] = sha
        manifest_file.write_text(json.dumps(manifest))


def test_a_rewritten_rehashed_card_is_refused_at_deploy_and_by_modelcard_load(signed):
    with Restored(signed.path, _bento_src(signed)):
        _rewrite_card_and_its_hashes(signed)
        with pytest.raises(deploykit.IntegrityError, match=r"model/card.json in .* was changed after packaging"):
            deploykit.deploy(deploykit.Package.load("signed"), profile="eu-ai-act-high-risk", verbose=False)
        with pytest.raises(deploykit.IntegrityError, match="model/card.json"):
            deploykit.ModelCard.load(signed.path / "model")
    assert deploykit.ModelCard.load(signed.path / "model").model_sha256 == signed.manifest["artifacts"]["model"]["sha256"]


def test_a_card_saved_on_its_own_loads_without_a_package(signed, tmp_path):
    signed.card.save(tmp_path / "review")
    assert deploykit.ModelCard.load(tmp_path / "review").name == "signed"


def test_only_the_bento_tampered_is_refused_too(signed):
    with Restored(_bento_src(signed)):
        (_bento_src(signed) / "model" / "sample.json").write_text("[]")
        with pytest.raises(deploykit.IntegrityError, match=r"model/sample.json in .*/src has sha256"):
            signing.verify_package(signed)


def test_a_statement_edited_or_resigned_by_another_key_is_refused(signed, attacker_key, tmp_path):
    signature_file = signed.path / "model" / "signature.json"
    with Restored(signed.path):
        document = json.loads(signature_file.read_text())
        document["statement"]["version"] = "7"
        signature_file.write_text(json.dumps(document))
        with pytest.raises(deploykit.IntegrityError, match="does not match the signed content"):
            signing.verify_package(signed)
        # the attacker re-hashes and signs with a key of their own: not a trusted key
        attacker = signing.sign_package(signed.path, signed.manifest, key=attacker_key)
        with pytest.raises(deploykit.IntegrityError, match=f"signed by key {attacker}, which is not a trusted key"):
            signing.verify_package(signed)
        # once the user trusts that key (an organisation's release key, say), its signature is accepted
        public = tmp_path / "attacker.pub"
        public.write_text(signing.public_key(attacker_key))
        assert main(["keys", "trust", str(public)]) == 0
        try:
            assert signing.verify_package(signed) == attacker
        finally:
            assert main(["keys", "untrust", attacker]) == 0
        with pytest.raises(deploykit.IntegrityError, match="not a trusted key"):
            signing.verify_package(signed)


def test_an_organisation_key_from_the_environment_signs(attacker_key, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_SIGNING_KEY", str(attacker_key))
    signature = signing.sign(b"approved")
    assert signature["key_id"] == runtime_signature.key_id(runtime_signature.raw_public_key(signing.public_key(attacker_key)))
    assert signing.verify(b"approved", signature) == signature["key_id"]  # the configured key is trusted here
    own = signing.load_or_create_key(signing.keys_dir() / "signing.key")
    assert signing.verify(b"mine", signing.sign(b"mine", key=own))  # and still the user's own key
    monkeypatch.setenv("DEPLOYKIT_SIGNING_KEY", "/nonexistent/org.key")
    with pytest.raises(deploykit.ConfigError, match="signing key /nonexistent/org.key does not exist"):
        signing.sign(b"x")


def test_sign_and_verify_bytes(attacker_key):
    signature = signing.sign(b"churn v3 approved by risk")
    assert set(signature) == {"algorithm", "key_id", "public_key", "value"}
    assert signing.verify(b"churn v3 approved by risk", signature) == signature["key_id"]
    with pytest.raises(deploykit.IntegrityError, match="changed after signing"):
        signing.verify(b"churn v4 approved by risk", signature)
    other = signing.sign(b"x", key=attacker_key)
    with pytest.raises(deploykit.IntegrityError, match="not a trusted key"):
        signing.verify(b"x", other)
    assert signing.verify(b"x", other, trusted=[other["public_key"]]) == other["key_id"]
    forged = {**signature, "public_key": other["public_key"]}  # a trusted key id with another key's bytes
    with pytest.raises(deploykit.IntegrityError, match="changed after signing"):
        signing.verify(b"churn v3 approved by risk", {**forged, "value": other["value"]})


def _runtime_check(root: Path, trusted: str | None) -> subprocess.CompletedProcess:
    """The served runtime's start-up check, run from the package's own copy of the runtime."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from deploykit_runtime import service;"
            "service._verify_signature(); print('verified')")
    env = {**os.environ, "DEPLOYKIT_PACKAGE_DIR": str(root / "model")}
    env.pop("DEPLOYKIT_TRUSTED_KEYS", None)
    if trusted is not None:
        env["DEPLOYKIT_TRUSTED_KEYS"] = trusted
    return subprocess.run([sys.executable, "-I", "-c", code, str(root)], capture_output=True, text=True, env=env, timeout=120)


def test_the_served_runtime_checks_the_signature_at_start(signed, attacker_key):
    src = _bento_src(signed)
    assert _runtime_check(src, signing.trusted_env()).stdout.strip() == "verified"
    other = signing.sign(b"x", key=attacker_key)["public_key"]
    refused = _runtime_check(src, other)
    assert refused.returncode != 0 and "which is not a trusted key" in refused.stderr
    untrusted_list = _runtime_check(src, None)  # no trust list: the files are still checked against the signature
    assert untrusted_list.stdout.strip() == "verified" and "DEPLOYKIT_TRUSTED_KEYS is not set" in untrusted_list.stderr
    with Restored(src):
        (src / "model" / "background.json").write_text("[]")
        tampered = _runtime_check(src, signing.trusted_env())
    assert tampered.returncode != 0 and "IntegrityError: model/background.json" in tampered.stderr


@pytest.mark.serve
def test_a_real_server_refuses_to_start_on_a_package_signed_by_an_untrusted_key(signed, attacker_key, tmp_path):
    import os
    import subprocess
    import sys
    import time

    from deploykit._targets.local import free_port

    other = signing.sign(b"x", key=attacker_key)["public_key"]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", str(signed.bento_path), "--port",
                                    str(free_port())], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "DEPLOYKIT_TRUSTED_KEYS": other})
    try:
        deadline = time.monotonic() + 90
        while "not a trusted key" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "which is not a trusted key" in log.read_text(errors="replace")
    finally:
        os.killpg(process.pid, 9)
        process.wait(10)


def test_unsigned_packages_are_refused(signed, tmp_path):
    copy = tmp_path / "unsigned"
    shutil.copytree(signed.path, copy)
    (copy / "model" / "signature.json").unlink()
    with pytest.raises(deploykit.IntegrityError, match="is not signed .*package the model again"):
        signing.verify_package(deploykit.Package.load(copy))
