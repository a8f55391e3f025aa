"""%deploy in a real IPython shell: deploy, list, stop, and one-line errors."""

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
