"""The audit trail (issue 12, point 2): hash chain, durability under kill -9, two writers, signed checkpoints."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import deploykit
from deploykit._cli import main
from deploykit._front import audit as _format
from deploykit._security import audit

TESTS = Path(__file__).parent


def _writer(name: str, **options) -> _format.AuditLog:
    return audit.open_log(name, fsync="never", **options)


def _request(log: _format.AuditLog, i: int, body: bytes = b'{"instances": [{"age": 41}]}') -> dict:
    return log.request(request_id=f"r{i}", version="3", key_id="3f9a1c2b7d4e", method="POST", path="/predict",
                       status=200, input=body, output=b'{"predictions": [1]}')


def _lines(name: str) -> list[bytes]:
    return audit.log_path(name).read_bytes().splitlines(keepends=True)


def _rewrite(name: str, lines: list[bytes], start: int) -> None:
    """Re-chain every record from ``start`` on, as someone who rewrites the file (but holds no key) would."""
    previous = json.loads(lines[start - 1])["hash"] if start else _format.GENESIS
    for index in range(start, len(lines)):
        body = json.loads(lines[index])
        body.pop("hash")
        if body["kind"] == "checkpoint":  # a careful forger points each checkpoint at the new head
            body["head"] = previous
        lines[index], previous = _format.encode(body, previous)
    audit.log_path(name).write_bytes(b"".join(lines))


def test_records_chain_and_carry_digests_not_values(capsys):
    with _writer("audit-basic", checkpoint_every=10) as log:
        first = _request(log, 0, b'{"instances": [{"secret_column": "ssn-123-45-6789"}]}')
        for i in range(1, 25):
            _request(log, i)
        log.action("deploy", who="alice@laptop", what={"version": "3", "target": "local"})
    text = audit.log_path("audit-basic").read_text()
    assert "ssn-123-45-6789" not in text
    assert first["input_sha256"] == _format.sha256_hex(b'{"instances": [{"secret_column": "ssn-123-45-6789"}]}')
    assert first["hash"] == _format.chain_hash(_format.GENESIS, _format.canonical({k: v for k, v in first.items() if k != "hash"}))
    verdict = audit.verify("audit-basic")
    assert verdict.ok and verdict.records == 25 + 1 + 3  # 25 requests, 1 action, checkpoints after 10, 20 and at close
    assert verdict.checkpoints == 3 and verdict.uncovered == 0
    assert main(["audit", "verify", "audit-basic"]) == 0
    assert "29 records, chain intact, 3 signed checkpoints" in capsys.readouterr().out
    table = audit.frame("audit-basic")
    assert list(table["seq"]) == list(range(29)) and str(table["time"].dt.tz) == "UTC"
    assert table.loc[table["kind"] == "action", "who"].tolist() == ["alice@laptop"]
    assert main(["audit", "show", "audit-basic", "--tail", "3"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 3 and "deploy" in shown[1] and "alice@laptop" in shown[1] and "checkpoint" in shown[2]


@pytest.mark.parametrize("where", ["body", "hash", "seq"])
def test_one_flipped_byte_is_found_and_named(where, capsys):
    name = f"audit-flip-{where}"
    with _writer(name, checkpoint_every=1000) as log:
        for i in range(40):
            _request(log, i)
    assert main(["audit", "verify", name]) == 0
    lines = _lines(name)
    victim = bytearray(lines[17])
    offset = {"body": victim.index(b'"version":"3"') + 12, "hash": len(victim) - 10,
              "seq": victim.index(b'"seq":17') + 7}[where]
    victim[offset] ^= 0x01
    lines[17] = bytes(victim)
    audit.log_path(name).write_bytes(b"".join(lines))
    capsys.readouterr()
    assert main(["audit", "verify", name]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"audit log of {name}: record 17 is broken:"), err
    verdict = audit.verify(name)
    assert (verdict.ok, verdict.broken) == (False, 17)


def test_a_kill_9_during_a_burst_loses_no_acknowledged_record(tmp_path):
    folder = deploykit._paths.deployment_dir("audit-kill")
    child = subprocess.Popen(
        [sys.executable, "-m", "helpers.audit_writer", str(folder), "audit-kill", "1000000", str(audit.audit_key_path()), "w"],
        cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) == 3000:
            os.kill(child.pid, signal.SIGKILL)  # mid-burst: the child is writing as fast as it can
            break
    acknowledged += [line.strip() for line in child.stdout]  # what it printed before dying was acknowledged too
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()[-2000:]
    recorded = {r["request_id"] for r in map(json.loads, _lines("audit-kill")) if r["kind"] == "request"}
    assert len(acknowledged) >= 3000 and set(acknowledged) <= recorded
    verdict = audit.verify("audit-kill")
    assert verdict.ok and verdict.checkpoints >= 29, verdict
    with _writer("audit-kill") as log:  # a new writer continues the same chain
        _request(log, 0)
    assert audit.verify("audit-kill").ok


def test_two_writer_processes_keep_one_valid_chain(tmp_path):
    folder = deploykit._paths.deployment_dir("audit-two")
    key, go = str(audit.audit_key_path()), tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-m", "helpers.audit_writer", str(folder), "audit-two", "1500", key,
                                  prefix, "200", str(go)], cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
                for prefix in ("a", "b")]
    for child in children:  # both loaded and waiting: they start writing together
        assert child.stdout.readline().strip() == "ready", child.stderr.read()[-2000:]
    go.touch()
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err[-2000:] for _, err in outputs]
    records = [json.loads(line) for line in _lines("audit-two")]
    ids = [r["request_id"] for r in records if r["kind"] == "request"]
    assert sorted(ids) == sorted(f"{p}-{i}" for p in "ab" for i in range(1500))
    assert [r["seq"] for r in records] == list(range(len(records)))
    interleaved = sum(1 for x, y in zip(ids, ids[1:]) if x[0] != y[0])
    assert interleaved > 1, "the two writers never interleaved: the test did not test concurrency"
    verdict = audit.verify("audit-two")
    assert verdict.ok and verdict.checkpoints >= 2 * 7, verdict


def test_checkpoints_verify_and_forged_ones_are_refused(tmp_path, capsys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with _writer("audit-forge", checkpoint_every=5) as log:
        for i in range(12):
            _request(log, i)
    original = _lines("audit-forge")
    checkpoints = [i for i, line in enumerate(original) if b'"kind":"checkpoint"' in line]
    assert checkpoints == [5, 11, 14] and audit.verify("audit-forge").ok

    # an altered signature, the chain recomputed around it
    lines = list(original)
    record = json.loads(lines[11])
    signature = bytearray(base64.b64decode(record["signature"]))
    signature[0] ^= 0x01
    lines[11] = json.dumps({**record, "signature": base64.b64encode(bytes(signature)).decode()}).encode() + b"\n"
    _rewrite("audit-forge", lines, 11)
    verdict = audit.verify("audit-forge")
    assert (verdict.broken, verdict.ok) == (11, False) and "signature does not verify" in verdict.reason

    # history rewritten and re-chained: the next checkpoint no longer signs the chain's head
    lines = list(original)
    lines[2] = lines[2].replace(b'"status":200', b'"status":500')
    _rewrite("audit-forge", lines, 2)
    verdict = audit.verify("audit-forge")
    assert (verdict.broken, verdict.ok) == (5, False) and "forged or altered" in verdict.reason

    # a checkpoint signed with a key of the forger's own
    forger = Ed25519PrivateKey.generate()
    lines = list(original)
    record = json.loads(lines[5])
    message = _format.checkpoint_message("audit-forge", record["covers"], record["head"], record["time"])
    public = forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    lines[5] = json.dumps({**record, "key_id": _format.key_id(public),
                           "signature": base64.b64encode(forger.sign(message)).decode()}).encode() + b"\n"
    _rewrite("audit-forge", lines, 5)
    capsys.readouterr()
    assert main(["audit", "verify", "audit-forge"]) == 1
    assert "record 5 is broken" in capsys.readouterr().err and "not a trusted audit key" in audit.verify("audit-forge").reason
    forger_file = tmp_path / "forger.pub"
    forger_file.write_bytes(forger.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    # even trusting the forger's key, the real checkpoint after it no longer matches the re-chained head
    verdict = audit.verify("audit-forge", keys=[str(forger_file)])
    assert verdict.broken == 11 and "forged or altered" in verdict.reason


def test_the_checkpoint_key_must_live_outside_the_log_folder():
    folder = deploykit._paths.deployment_dir("audit-keyplace")
    inside = folder / "audit.key"
    inside.write_bytes(audit.audit_key_path().read_bytes())
    with pytest.raises(ValueError, match="must not be inside the log's folder"):
        _format.AuditLog(folder, key_path=inside)
    assert not audit.audit_key_path().resolve().is_relative_to(deploykit._paths.deployment_dir())


def test_a_torn_tail_is_not_a_break_and_the_next_writer_cuts_it():
    with _writer("audit-torn") as log:
        for i in range(5):
            _request(log, i)
    with open(audit.log_path("audit-torn"), "ab") as handle:
        handle.write(b'{"kind":"request","seq":7,"ti')  # a write that never completed
    verdict = audit.verify("audit-torn")
    assert verdict.ok and verdict.torn_tail and "never acknowledged" in verdict.notes[0]
    with _writer("audit-torn") as log:
        assert _request(log, 5)["seq"] == 6
    verdict = audit.verify("audit-torn")
    assert verdict.ok and not verdict.torn_tail and verdict.records == 8


def test_fsync_policies():
    for policy in ("never", "always", "interval"):
        with audit.open_log(f"audit-fsync-{policy}", fsync=policy, fsync_interval=0.01) as log:
            _request(log, 0)
        assert audit.verify(f"audit-fsync-{policy}").ok
    with pytest.raises(ValueError, match="fsync='sometimes'"):
        audit.open_log("audit-fsync-x", fsync="sometimes")


def test_key_actions_are_audited_with_who(monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_ACTOR", "ci-job-42")
    made = deploykit.keys.create("audit-keys", "predict")
    deploykit.keys.revoke("audit-keys", made.id)
    actions = audit.frame("audit-keys").query("kind == 'action'")
    assert actions["action"].tolist() == ["key_create", "key_revoke"] and set(actions["who"]) == {"ci-job-42"}
    assert made.token.split("_", 2)[2] not in audit.log_path("audit-keys").read_text()
    assert audit.verify("audit-keys").ok


@pytest.mark.serve
def test_package_deploy_profile_and_stop_are_recorded(churn_package):
    from deploykit._security import signing

    dep = deploykit.deploy(churn_package, name="audit-flow", profile="internal", verbose=False)
    dep.stop()
    actions = audit.frame("audit-flow").query("kind == 'action'")
    assert actions["action"].tolist() == ["deploy", "stop"]
    deployed = actions.iloc[0]["what"]
    assert deployed["version"] == churn_package.version and deployed["target"] == "local"
    assert deployed["signed_by"] == signing.verify_package(churn_package)
    # the package's own log (its name): packaging, then the profile's verdict at this deploy
    lifecycle = audit.frame("churn").query("kind == 'action'")
    packaged = lifecycle[lifecycle["action"] == "package"]["what"].tolist()
    assert churn_package.version in [p["version"] for p in packaged]
    decision = lifecycle[lifecycle["action"] == "profile"]["what"].tolist()[-1]
    assert decision == {"version": churn_package.version, "profile": "internal", "during": "deploying",
                        "decision": "passed", "errors": []}
    assert audit.verify("audit-flow").ok and audit.verify("churn").ok
