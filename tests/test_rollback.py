"""deploykit.rollback against real `bentoml serve`: back along the release stack, health-gated, clear refusals."""

import json
import shutil

import pytest

import deploykit
from deploykit._cli import main
from deploykit._rollback import releases
from deploykit._runtime.model import MANIFEST
from helpers.signing import resign

pytestmark = pytest.mark.serve

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]


@pytest.fixture(scope="module")
def versions(churn):
    """Two versions of package 'rb' whose models disagree on some held-out rows."""
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, y_test = (part[NUMERIC] if i in (0, 1) else part for i, part in enumerate(churn))
    made = []
    for depth in (1, 6):
        model = RandomForestClassifier(n_estimators=8, max_depth=depth, random_state=0).fit(X_train, y_train)
        pkg = deploykit.package(model, name="rb", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, verbose=False)
        made.append((pkg, model))
    rows = X_test.iloc[:40]
    assert made[0][1].predict(rows).tolist() != made[1][1].predict(rows).tolist()
    return made, rows


def _broken_copy(pkg, version: str, tmp_path) -> None:
    """Version ``version`` of the package on disk, whose bento's model artifact fails its sha256 check."""
    target = pkg.path.parent / version
    shutil.copytree(pkg.path, target)
    bento = tmp_path / "broken-bento"
    shutil.copytree(pkg.manifest["bento"]["path"], bento)
    (bento / "src" / "model" / pkg.manifest["artifacts"]["model"]["file"]).write_bytes(b"not the model")
    manifest_path = target / "model" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest.update(version=version, bento={"tag": f"rb:broken{version}", "path": str(bento)})
    manifest_path.write_text(json.dumps(manifest))
    resign(bento / "src")  # signed, so it passes the deploy-time check and fails at start
    resign(target)


def test_rollback_walks_back_and_keeps_serving_on_failure(versions, tmp_path, capsys):
    (v1, model1), (v2, model2) = versions[0]
    rows = versions[1]
    with pytest.raises(deploykit.ConfigError, match="no running deployment named 'rb'"):
        deploykit.rollback("rb")

    first = deploykit.deploy(v1, name="rb", verbose=False)
    with pytest.raises(deploykit.ConfigError, match="nothing to roll back to: rb serves v1 of 'rb'"):
        deploykit.rollback("rb")
    second = deploykit.deploy(v2, name="rb", verbose=False)
    assert [r["version"] for r in releases("rb")] == ["1", "2"] and first.stopped

    back = deploykit.rollback("rb", verbose=False)
    assert (back.version, back.target) == ("1", "local") and second.stopped and not second.health()["live"]
    assert back.predict(rows).tolist() == model1.predict(rows).tolist()
    assert [r["version"] for r in releases("rb")] == ["1"]
    with pytest.raises(deploykit.ConfigError, match="nothing to roll back to"):
        deploykit.rollback("rb")
    with pytest.raises(deploykit.ConfigError, match="already serves v1"):
        deploykit.rollback("rb", to=1)
    with pytest.raises(deploykit.ConfigError, match="no version '9' of package 'rb' to roll back to; versions: 1, 2"):
        deploykit.rollback("rb", to="9")

    # a rollback target that cannot start: the CLI says why in one line, and v1 keeps serving
    _broken_copy(v2, "3", tmp_path)
    assert main(["rollback", "rb", "--to", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "IntegrityError" in err and "keeps serving" in err
    assert back.health()["ready"] and back.predict(rows).tolist() == model1.predict(rows).tolist()
    assert [d for d in deploykit.deployments() if d.name == "rb"] == [back]
    assert [r["version"] for r in releases("rb")] == ["1"]
    back.stop()
