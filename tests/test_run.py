"""`deploykit run`: a real notebook executed by papermill in a real kernel, then its package deployed."""

import json
from pathlib import Path

import pytest

import deploykit
from deploykit._cli import main

NOTEBOOK = Path(__file__).parent / "notebooks" / "train_tiny.ipynb"


def _sources(path: Path) -> str:
    return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])


@pytest.mark.serve
def test_run_deploys_the_package_the_notebook_makes(tmp_path, capsys):
    out = tmp_path / "executed.ipynb"
    code = main(["run", str(NOTEBOOK), "-p", "n_estimators", "7", "-p", "name", "tinyrun",
                 "--output", str(out), "--cards", str(tmp_path / "cards"), "--stop"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "n_estimators = 7" in _sources(out) and "trained 7 trees" in out.read_text()  # the parameter reached the kernel
    assert "serving tinyrun v1 at http://127.0.0.1:" in stdout  # deployed by run, after /readyz and a smoke prediction
    line = next(line for line in stdout.splitlines() if line.startswith("tinyrun\t"))
    assert line.split("\t")[1:3] == ["v1", "local"] and line.endswith("stopped after its checks")
    card = json.loads((tmp_path / "cards" / "tinyrun" / "card.json").read_text())
    assert '"n_estimators": 7' in json.dumps(card)  # the packaged model is the one trained with the parameter
    assert "tinyrun" not in [d.name for d in deploykit.deployments()]


def test_a_failing_cell_is_one_line_naming_the_cell(tmp_path, capsys):
    out = tmp_path / "failed.ipynb"
    assert main(["run", str(NOTEBOOK), "-p", "n_estimators", "-1", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train_tiny.ipynb failed in cell 3 (InvalidParameterError: The 'n_estimators'" in err
    assert str(out) in err and "InvalidParameterError" in out.read_text()  # the traceback is kept in the executed copy


def test_a_notebook_that_packages_nothing_has_nothing_to_deploy(tmp_path, capsys):
    assert main(["run", str(NOTEBOOK), "-p", "package", "False", "--output", str(tmp_path / "out.ipynb")]) == 1
    assert "made no package, so there is nothing to deploy" in capsys.readouterr().err


def test_only_notebooks_run(tmp_path, capsys):
    (tmp_path / "train.py").write_text("print('hi')")
    assert main(["run", str(tmp_path / "train.py")]) == 1
    assert "is not a notebook file (.ipynb)" in capsys.readouterr().err


def test_a_missing_kernel_is_named(tmp_path, capsys):
    notebook = json.loads(NOTEBOOK.read_text())
    notebook["metadata"]["kernelspec"]["name"] = "no-such-kernel"
    (tmp_path / "other.ipynb").write_text(json.dumps(notebook))
    assert main(["run", str(tmp_path / "other.ipynb")]) == 1
    assert "asks for the Jupyter kernel 'no-such-kernel', which is not installed here" in capsys.readouterr().err
