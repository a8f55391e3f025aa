"""API keys (issue 12, point 1): the key file the host writes, and the front's check of each request."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import deploykit
from deploykit._cli import main
from deploykit._front.auth import Authenticator, count_rows
from deploykit._security import keys


class Clock:
    """A clock the test moves by hand (the bucket refill and expiry are about time)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _headers(token: str | None) -> list:
    return [(b"host", b"x")] + ([(b"authorization", f"Bearer {token}".encode())] if token is not None else [])


def _front(name: str, **clocks) -> Authenticator:
    return Authenticator(deploykit._paths.deployment_dir(name), name, **clocks)


def _status(front: Authenticator, path: str, token: str | None, body: bytes | None = None):
    key_id, rejection = front.check(path, "POST", _headers(token), body)
    return (200, key_id) if rejection is None else (rejection.status, json.loads(rejection.body))


def test_no_key_401_wrong_scope_403_good_key_passes_revoked_401():
    front = _front("auth-basic")
    predict = keys.create("auth-basic", "predict")
    admin = keys.create("auth-basic", ["admin"])
    status, body = _status(front, "/predict", None)
    assert status == 401 and set(body) == {"error", "details"} and "Authorization: Bearer" in body["error"]
    rejection = front.check("/predict", "POST", _headers(None))[1]
    assert (b"www-authenticate", b'Bearer realm="deploykit"') in rejection.headers
    assert _status(front, "/predict", predict.token) == (200, predict.id)
    assert _status(front, "/predict_proba", predict.token) == (200, predict.id)
    assert _status(front, "/schema", predict.token) == (200, predict.id)
    status, body = _status(front, "/explain", predict.token)
    assert status == 403 and "needs explain and has predict" in body["error"]
    assert _status(front, "/info", predict.token)[0] == 403 and _status(front, "/info", admin.token)[0] == 200
    assert _status(front, "/_deploykit/front", admin.token)[0] == 200
    assert _status(front, "/_deploykit/front", predict.token)[0] == 403
    for exempt in ("/livez", "/readyz"):
        assert front.check(exempt, "GET", _headers(None)) == (None, None)
    for unmapped in ("/predict/", "/PREDICT", "/admin", "/_deploykit/../info", "/static/x.js"):
        status, body = _status(front, unmapped, admin.token)
        assert status == 403 and "not an endpoint of this service" in body["error"], unmapped
    keys.revoke("auth-basic", predict.id)  # taken up without a restart: the file changed
    status, body = _status(front, "/predict", predict.token)
    assert status == 401 and body["error"] == f"API key {predict.id} was revoked"
    assert front.rejected == {"missing": 2, "invalid": 0, "revoked": 1, "expired": 0, "scope": 8}


def test_bad_tokens_are_401_invalid():
    front = _front("auth-bad")
    good = keys.create("auth-bad", "predict")
    _, key_id, secret = good.token.split("_", 2)
    for token in ("", "dk_", f"dk_{key_id}_", f"dk_{key_id}_{secret[:-1]}x", f"dk_000000000000_{secret}", secret):
        assert _status(front, "/predict", token)[0] == 401, token
    basic = front.check("/predict", "POST", [(b"authorization", b"Basic dXNlcjpwYXNz")])[1]
    assert basic.status == 401 and basic.reason == "invalid"
    stored = (deploykit._paths.deployment_dir("auth-bad") / "keys.json").read_text()
    assert secret not in stored and json.loads(stored)["keys"][key_id]["sha256"] != secret
    assert front.rejected["invalid"] == 7


def test_expiry_and_rotation_overlap():
    wall = Clock(dt.datetime.now(dt.timezone.utc).timestamp())
    front = _front("auth-time", wall=wall)
    made = keys.create("auth-time", "predict", expires="2h")
    assert _status(front, "/predict", made.token)[0] == 200
    rotated = keys.rotate("auth-time", made.id, overlap="10m")
    assert rotated.id == made.id and rotated.token != made.token
    assert _status(front, "/predict", made.token)[0] == 200 and _status(front, "/predict", rotated.token)[0] == 200
    wall.now += 11 * 60  # the overlap is over: only the new secret works
    assert _status(front, "/predict", made.token)[0] == 401 and _status(front, "/predict", rotated.token)[0] == 200
    wall.now += 2 * 3600
    status, body = _status(front, "/predict", rotated.token)
    assert status == 401 and body["error"] == f"API key {made.id} has expired"
    assert keys.list("auth-time").loc[0, "status"] == "active"  # by the real clock it has not expired yet


def test_rate_limit_gives_429_with_retry_after_and_is_counted():
    clock = Clock(1000.0)
    front = _front("auth-rate", clock=clock)
    made = keys.create("auth-rate", "predict", rate=2, burst=3)
    assert [_status(front, "/predict", made.token)[0] for _ in range(4)] == [200, 200, 200, 429]
    rejection = front.check("/predict", "POST", _headers(made.token))[1]
    assert rejection.status == 429 and (b"retry-after", b"1") in rejection.headers
    assert "over its rate limit of 2 requests/s (burst 3)" in json.loads(rejection.body)["error"]
    clock.now += 0.5  # one token back
    assert _status(front, "/predict", made.token)[0] == 200 and _status(front, "/predict", made.token)[0] == 429
    assert front.rate_limited == {made.id: 3}
    text = front.metrics()
    assert f'deploykit_rate_limited_total{{name="auth-rate",key_id="{made.id}"}} 3' in text
    assert 'deploykit_auth_rejected_total{name="auth-rate",reason="missing"} 0' in text
    unlimited = keys.create("auth-rate", "predict", rate=0)
    assert all(_status(front, "/predict", unlimited.token)[0] == 200 for _ in range(500))


def test_explain_row_quota():
    clock = Clock(50.0)
    front = _front("auth-rows", clock=clock)
    made = keys.create("auth-rows", "predict,explain", explain_rows=10)
    rows = lambda n: json.dumps({"instances": [{"age": 30}] * n}).encode()  # noqa: E731
    assert _status(front, "/explain", made.token, rows(8))[0] == 200
    status, body = _status(front, "/explain", made.token, rows(5))
    assert status == 429 and "over its /explain quota of 10 rows per 1 h (this request has 5)" in body["error"]
    retry = dict(front.check("/explain", "POST", _headers(made.token), rows(5))[1].headers)[b"retry-after"]
    assert int(retry) == 1080  # 3 rows missing, refilled at 10 per hour
    assert _status(front, "/predict", made.token, rows(500))[0] == 200  # predictions are not rows of the quota
    assert _status(front, "/explain", made.token, rows(11))[0] == 429  # more than the whole quota
    clock.now += 3600
    assert _status(front, "/explain", made.token, rows(10))[0] == 200
    assert (count_rows(b"not json"), count_rows(b'{"instances": []}'), count_rows(rows(3))) == (1, 1, 3)


def test_a_broken_key_file_keeps_the_keys_read_before():
    front = _front("auth-broken")
    made = keys.create("auth-broken", "predict")
    assert _status(front, "/predict", made.token)[0] == 200
    path = deploykit._paths.deployment_dir("auth-broken") / "keys.json"
    path.write_text(path.read_text()[:-20])
    assert _status(front, "/predict", made.token)[0] == 200


def test_keys_cli(capsys):
    assert main(["keys", "create", "auth-cli", "--scope", "predict,explain", "--expires", "30d", "--rate", "5"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("dk_") and "shown once" in err
    key_id = token.split("_")[1]
    assert main(["keys", "list", "auth-cli"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "predict,explain" in listed and "5/s burst 10" in listed and token.split("_", 2)[2] not in listed
    assert main(["keys", "rotate", "auth-cli", key_id, "--overlap", "5m"]) == 0
    assert capsys.readouterr().out.strip() != token
    assert main(["keys", "revoke", "auth-cli", key_id]) == 0
    assert main(["keys", "revoke", "auth-cli", "nope"]) == 1
    assert "has no API key 'nope'" in capsys.readouterr().err
    assert main(["keys", "create", "auth-cli", "--scope", "everything"]) == 1
    assert "choose from predict, explain, card, metrics, admin" in capsys.readouterr().err
    assert main(["keys", "create", "auth-cli", "--expires", "soon"]) == 1
    assert "duration 'soon' is not understood" in capsys.readouterr().err
    assert keys.parse_duration("12h") == dt.timedelta(hours=12) and keys.parse_duration("2w") == dt.timedelta(days=14)


def test_keys_in_the_magic():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "deploykit")
    with capture_output():
        made = ip.run_cell("%deploy keys create auth-magic --scope predict --expires 12h")
        listed = ip.run_cell("%deploy keys list auth-magic")
        verified = ip.run_cell("%deploy audit verify auth-magic")
        bad = ip.run_cell("%deploy keys create auth-magic --scope nothing")
    assert isinstance(made.result, keys.NewKey) and made.result.token in repr(made.result)
    assert listed.result["id"].tolist() == [made.result.id]
    assert verified.result.ok and "chain intact" in repr(verified.result)
    assert type(bad.error_in_exec).__name__ == "UsageError" and "scope(s) ['nothing'] not known" in str(bad.error_in_exec)


def test_keys_api_is_public_and_small():
    assert deploykit.keys is keys
    assert sorted(keys.__all__) == ["NewKey", "create", "list", "public_key", "revoke", "rotate", "trust", "trusted", "untrust"]
    with pytest.raises(deploykit.ConfigError, match="name 'Bad Name' is not usable"):
        keys.create("Bad Name")


def test_front_modules_import_only_the_standard_library_and_cryptography():
    """deploykit/_front/ is copied alone into the front's image: stdlib, its siblings, and only what that image
    installs (FRONT_REQUIREMENTS: what it serves HTTP with, cryptography, orjson)."""
    import ast
    import sys
    from pathlib import Path

    from deploykit._docker.build import FRONT_REQUIREMENTS

    front = Path(deploykit.__file__).parent / "_front"
    for path in front.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                allowed = ("__future__", *FRONT_REQUIREMENTS)
                assert root in sys.stdlib_module_names or root in allowed, f"{path.name}: {root}"
