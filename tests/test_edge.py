"""The edge bundle: Package.export("edge", ...) and `deploykit export`, run in a virtualenv holding only
numpy and the compiled engine."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import deploykit
from deploykit._runtime.manifest import Manifest
from deploykit._cli import main
from deploykit._schema import records


@pytest.fixture(scope="module")
def bundle(churn_package, tmp_path_factory):
    return churn_package.export("edge", tmp_path_factory.mktemp("edge") / "churn-edge")


@pytest.fixture(scope="module")
def fresh_rows():
    """Customers neither the training nor the parity gate saw."""
    from deploykit.demo import make_churn

    X, _ = make_churn(n=120, seed=99)
    return X


def test_the_bundle_holds_model_schema_parity_card_and_a_zip(bundle, churn_package):
    fast = churn_package.manifest["serving"]["fast_path"]
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"predict.py", "requirements.txt", "README.md", f"model/{fast['file']}", "model/prep.json",
            "model/schema.json", "model/edge.json", "model/parity.json", "model/card.html", "model/card.json",
            "deploykit_edge/prep.py", "deploykit_edge/fastpath.py"} <= names
    parity = json.loads((bundle / "model" / "parity.json").read_text())
    assert parity["rows_checked"] == fast["rows_checked"] and parity["max_difference"] == fast["max_difference"]
    assert json.loads((bundle / "model" / "schema.json").read_text()) == churn_package.schema
    requirements = (bundle / "requirements.txt").read_text().split()
    assert [r.split("==")[0] for r in requirements] == ["numpy", *fast["requires"]]
    with zipfile.ZipFile(bundle.with_name("churn-edge.zip")) as zf:
        assert {n.split("/", 1)[1] for n in zf.namelist()} == names


def test_the_bundle_predicts_in_a_virtualenv_with_only_its_runtime_packages(bundle, churn_model, fresh_rows, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r",
                          str(bundle / "requirements.txt")], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    installed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json"], capture_output=True, text=True,
                               check=True).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert not names & {"deploykit", "scikit-learn", "pandas", "skops", "bentoml", "shap"}
    (tmp_path / "rows.json").write_text(json.dumps(records(fresh_rows)))
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import predict;"
            "rows = json.load(open(sys.argv[2]));"
            "print(json.dumps({'labels': predict.predict(rows), 'proba': predict.predict_proba(rows),"
            " 'modules': sorted(m for m in ('sklearn', 'pandas', 'deploykit') if m in sys.modules)}))")
    run = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", code, str(bundle), str(tmp_path / "rows.json")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["modules"] == []
    assert out["labels"] == churn_model.predict(fresh_rows).tolist()
    assert np.abs(np.asarray(out["proba"]) - churn_model.predict_proba(fresh_rows)).max() <= 1e-5


def test_the_cli_exports_and_refuses_a_folder_in_use(churn_package, tmp_path, capsys):
    target = tmp_path / "cli-edge"
    assert main(["export", str(churn_package.path), "--format", "edge", "-o", str(target)]) == 0
    assert f"wrote {target}/" in capsys.readouterr().out and (tmp_path / "cli-edge.zip").exists()
    assert main(["export", str(churn_package.path), "--format", "edge", "-o", str(target)]) == 1
    assert "exists and is not empty" in capsys.readouterr().err


def test_a_package_without_a_compiled_model_says_why_it_cannot_export(churn_package, tmp_path):
    manifest = Manifest.from_dict(churn_package.manifest.to_dict())
    manifest.serving.fast_path = {"enabled": False, "reason": "preprocessing: FunctionTransformer has no numpy form"}
    plain = deploykit.Package(path=churn_package.path, manifest=manifest, bento=churn_package.bento)
    with pytest.raises(deploykit.ConfigError, match="no compiled model to export: preprocessing: FunctionTransformer"):
        plain.export("edge", tmp_path / "nothing")
    with pytest.raises(deploykit.ConfigError, match="unknown export format 'docker'"):
        churn_package.export("docker", tmp_path / "nothing")
