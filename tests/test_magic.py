"""%deploy in a real IPython shell: every command of the shared grammar, names as variables, one-line errors."""

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import deploykit


@pytest.fixture(scope="module")
def shell(churn, churn_model):
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "deploykit")
    X_train, X_test, y_train, y_test = churn
    ip.user_ns.update(model=churn_model, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    yield ip
    for dep in deploykit.deployments():
        if dep.name == "magic":
            dep.stop()


def _run(shell, line):
    with capture_output() as captured:
        result = shell.run_cell(line)
    return result, captured


@pytest.mark.serve
def test_deploy_list_stop(shell, churn_model, churn):
    result, captured = _run(shell, "%deploy model --name magic --train X_train y_train --test X_test y_test --target local")
    assert result.success, captured.stderr
    dep = result.result
    assert isinstance(dep, deploykit.Deployment) and dep.name == "magic"
    assert "parity" in captured.stdout and dep.url in captured.stdout
    X_test = churn[1].iloc[:5]
    assert dep.predict(X_test).tolist() == churn_model.predict(X_test).tolist()

    listed, _ = _run(shell, "%deploy list")
    assert dep in listed.result

    shell.user_ns["rows"] = X_test
    status, _ = _run(shell, "%deploy status magic")
    assert status.result is dep and "running" in repr(status.result)
    predicted, _ = _run(shell, "%deploy predict magic rows")
    assert predicted.result.tolist() == churn_model.predict(X_test).tolist()
    proba, _ = _run(shell, "%deploy predict magic rows --proba")
    assert np.abs(proba.result - churn_model.predict_proba(X_test)).max() <= 1e-6
    explained, _ = _run(shell, "%deploy explain magic rows")
    assert isinstance(explained.result, deploykit._client.Explanation) and len(explained.result) == 5
    logs, captured = _run(shell, "%deploy logs magic --tail 2")
    assert logs.result is None and captured.stdout.splitlines() == dep.logs(2).splitlines()
    card, _ = _run(shell, "%deploy card magic")
    assert isinstance(card.result, deploykit.ModelCard) and card.result.name == "magic"
    rollback, _ = _run(shell, "%deploy rollback magic")
    assert "nothing to roll back to: magic serves v1" in str(rollback.error_in_exec)
    assert type(rollback.error_in_exec).__name__ == "UsageError" and dep.health()["ready"]

    stopped, _ = _run(shell, "%deploy stop magic")
    assert stopped.success and dep.health()["live"] is False
    assert "magic" not in [d.name for d in deploykit.deployments()]


@pytest.mark.parametrize(
    "line, message",
    [
        ("%deploy nosuch --name x --train X_train", "no variable named 'nosuch' in the notebook"),
        ("%deploy model --name x --train X_train y_train extra", "--train takes X and optionally y"),
        ("%deploy model --name 'Bad Name' --train X_train y_train", "name 'Bad Name' is not usable"),
        ("%deploy model --name x --target mars --train X_train", "invalid choice: 'mars'"),
        ("%deploy stop nothing-here", "no running deployment named 'nothing-here'"),
        ("%deploy predict nothing-here X_test", "no running deployment named 'nothing-here'"),
        ("%deploy model --train X_train y_train", "deploying a model (not a saved package) needs --name NAME"),
        ("%deploy logs", "the following arguments are required: name"),
        ("%deploy rollback nothing-here --to 2", "no running deployment named 'nothing-here'"),
        ("%deploy demo", "the demo runs from a terminal"),
        ("%deploy run missing.ipynb", "'missing.ipynb' is not a notebook file (.ipynb) that exists"),
    ],
)
def test_errors_are_one_readable_line(shell, line, message):
    result, captured = _run(shell, line)
    assert not result.success
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert message in str(result.error_in_exec)
    assert "Traceback" not in captured.stdout + captured.stderr
    assert "\n" not in str(result.error_in_exec)


def test_debug_shows_the_real_exception(shell):
    result, _ = _run(shell, "%deploy model --name 'Bad Name' --train X_train y_train --debug")
    assert isinstance(result.error_in_exec, deploykit.ConfigError)


def test_help_documents_the_options(shell):
    doc = shell.find_line_magic("deploy").__doc__
    for option in ("--name", "--train", "--test", "--target", "%deploy list", "%deploy stop", "Example"):
        assert option in doc
    from deploykit._commands import COMMANDS

    for command in COMMANDS:
        assert f"usage: %deploy {command}" in doc
    for option in ("--follow", "--proba", "--open", "--to VERSION", "--sensitive", "--profile", "--card FIELDS", "-p KEY VALUE"):
        assert option in doc
    assert "examples:\n  %deploy predict churn X_test" in doc and "deploykit predict" not in doc


def test_help_flag_prints_and_returns(shell):
    result, captured = _run(shell, "%deploy predict --help")
    assert result.success and result.result is None
    assert "usage: %deploy predict" in captured.stdout and "a DataFrame variable" in captured.stdout


def test_a_followed_log_prints_until_interrupted(capsys):
    from deploykit._magic import _shown

    def lines():
        yield "first"
        yield "second"
        raise KeyboardInterrupt

    assert _shown(lines()) is None
    assert capsys.readouterr().out == "first\nsecond\n"


def test_schema_kinds_from_a_dict_variable_or_inline(shell):
    from deploykit._magic import Variables

    shell.user_ns["kinds"] = {"review": "text"}
    assert Variables(shell).schema("kinds") == {"review": "text"}
    assert Variables(shell).schema("review=text,plan=category") == {"review": "text", "plan": "category"}
