"""The deploykit command line: one grammar with %deploy, files for names, short errors, exit codes.

The serve tests share one deployment made the way a terminal user makes it: `deploykit deploy` of a
skops model file with CSV/Parquet data, in a real subprocess that serves until it is stopped.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import deploykit
from deploykit._cli import main
from deploykit._grammar import EXAMPLES, build_parser
from deploykit._commands import COMMANDS, parameters
from deploykit._files import load_model, read_fields, read_frame, read_labels

ROOT = Path(__file__).resolve().parent.parent
DEPLOYKIT = str(Path(sys.executable).parent / "deploykit")


# -- the grammar and its help -----------------------------------------------------------------------
def test_help_lists_every_command():
    out = subprocess.run([DEPLOYKIT, "--help"], capture_output=True, text=True, check=True).stdout
    for command in COMMANDS:
        assert f"    {command}" in out
    assert "--debug" in out and ".csv, .parquet or .json files" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_documents_its_options_with_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: deploykit {command}" in out and "examples:\n  deploykit " + command in out
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in out


def test_the_magic_and_cli_share_one_parser():
    args = build_parser().parse_args(["deploy", "clf", "--name", "churn", "--train", "X", "y", "--no-explain"])
    assert (args.model, args.name, args.train, args.explain, args.target) == ("clf", "churn", ["X", "y"], False, "local")
    args = build_parser("%deploy").parse_args(["logs", "churn", "--follow", "--tail", "5"])
    assert (args.name, args.follow, args.tail) == ("churn", True, 5)
    args = build_parser().parse_args(["run", "nb.ipynb", "-p", "alpha", "0.5", "-p", "name", "churn", "--stop"])
    assert parameters(args.parameter) == {"alpha": 0.5, "name": "churn"} and args.stop
    assert parameters([["flag", "True"], ["path", "data/x.csv"], ["n", "3"]]) == {"flag": True, "path": "data/x.csv", "n": 3}


def test_magic_examples_differ_from_cli_examples_only_in_front_end():
    for command, (cli, notebook) in EXAMPLES.items():
        assert all(e.startswith(f"deploykit {command}") for e in cli)
        assert notebook is None or all(e.startswith("%deploy") for e in notebook)


def test_errors_are_short_with_exit_code_1(capsys, tmp_path):
    assert main(["stop", "nothing-here"]) == 1
    err = capsys.readouterr().err
    assert "no running deployment named 'nothing-here'" in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["deploy", "no-such-package"]) == 1
    assert "no package named 'no-such-package'" in capsys.readouterr().err
    assert main(["predict", "nothing-here", "rows.csv"]) == 1
    assert "no running deployment named 'nothing-here'" in capsys.readouterr().err
    assert main(["deploy", str(tmp_path / "model.skops"), "--name", "x", "--train", "X.csv"]) == 1
    assert "model file" in capsys.readouterr().err
    assert main(["card", "nothing-here"]) == 1
    assert "no running deployment or saved package named 'nothing-here'" in capsys.readouterr().err
    assert main(["deploy", "--panel", "churn"]) == 1
    assert "use `%deploy --panel" in capsys.readouterr().err
    assert main(["bogus"]) == 2


def test_debug_raises_the_real_exception():
    with pytest.raises(deploykit.ConfigError, match="no running deployment"):
        main(["stop", "nothing-here", "--debug"])


def test_a_model_needs_name_and_training_data(tmp_path, churn_model, capsys):
    import skops.io

    skops.io.dump(churn_model, tmp_path / "model.skops")
    assert main(["deploy", str(tmp_path / "model.skops"), "--trust"]) == 1
    assert "needs --name NAME and --train X [y]" in capsys.readouterr().err


def test_the_docs_show_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    for command in COMMANDS:
        assert f"deploykit {command}" in text, command
    assert "deploykit run" in (ROOT / "README.md").read_text()


# -- names are files ---------------------------------------------------------------------------------
def test_data_files_csv_parquet_json(tmp_path, churn):
    X = churn[1].iloc[:4]
    X.to_csv(tmp_path / "x.csv", index=False)
    X.to_parquet(tmp_path / "x.parquet")
    rows = json.loads(X.to_json(orient="records"))
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "body.json").write_text(json.dumps({"instances": rows[:2]}))
    (tmp_path / "one.json").write_text(json.dumps(rows[0]))
    assert read_frame(tmp_path / "x.parquet").equals(X)
    assert read_frame(tmp_path / "x.csv")["contract"].tolist() == X["contract"].tolist()
    assert list(read_frame(tmp_path / "rows.json").columns) == list(X.columns)
    assert len(read_frame(tmp_path / "body.json")) == 2 and len(read_frame(tmp_path / "one.json")) == 1
    churn[3].iloc[:4].to_frame().to_csv(tmp_path / "y.csv", index=False)
    assert read_labels(tmp_path / "y.csv").tolist() == churn[3].iloc[:4].tolist()
    with pytest.raises(deploykit.SchemaError, match="a label file holds exactly one"):
        read_labels(tmp_path / "x.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(deploykit.ConfigError, match="unknown data file type '.xlsx'; use .csv, .parquet"):
        read_frame(tmp_path / "x.xlsx")
    with pytest.raises(deploykit.ConfigError, match="does not exist"):
        read_frame(tmp_path / "missing.csv")
    (tmp_path / "fields.toml").write_text('intended_use = "triage"\nowners = ["ml-team"]\n')
    assert read_fields(tmp_path / "fields.toml") == {"intended_use": "triage", "owners": ["ml-team"]}


def test_model_files_that_run_code_need_trust(tmp_path, churn_model, churn):
    import skops.io

    with open(tmp_path / "model.pkl", "wb") as file:
        pickle.dump(churn_model, file)
    with pytest.raises(deploykit.ConfigError, match="runs whatever code it holds. Pass --trust"):
        load_model(tmp_path / "model.pkl")
    rows = churn[1].iloc[:5]
    assert load_model(tmp_path / "model.pkl", trust=True).predict(rows).tolist() == churn_model.predict(rows).tolist()
    skops.io.dump(churn_model, tmp_path / "model.skops")
    with pytest.raises(deploykit.ConfigError, match="types skops does not trust by default: .*Tree"):
        load_model(tmp_path / "model.skops")
    assert load_model(tmp_path / "model.skops", trust=True).predict(rows).tolist() == churn_model.predict(rows).tolist()


def test_csv_cells_are_read_as_the_models_column_types(tmp_path, churn):
    from deploykit._schema import infer_schema, records

    X = churn[1].iloc[:6].copy()
    schema = infer_schema(churn[0])
    X.to_csv(tmp_path / "rows.csv", index=False)
    rows = records(read_frame(tmp_path / "rows.csv", schema))
    assert rows == records(X)  # ints stay ints, a missing total_charges is null
    assert [type(r["tenure_months"]) for r in rows] == [int] * 6
    text = (tmp_path / "rows.csv").read_text().splitlines()
    cells = text[4].split(",")
    cells[0] = "ten"  # one bad cell: before, the whole column became strings and row 0 took the blame
    (tmp_path / "bad.csv").write_text("\n".join(text[:4] + [",".join(cells)] + text[5:]) + "\n")
    with pytest.raises(deploykit.SchemaError) as info:
        read_frame(tmp_path / "bad.csv", schema)
    assert "row 3 (line 5), column 'tenure_months': 'ten' is not an integer" in str(info.value)


def test_schema_kinds_inline_or_from_a_file(tmp_path):
    from deploykit._cli import Files
    from deploykit._commands import deploy_kwargs

    args = build_parser().parse_args(["deploy", "m.skops", "--schema", "review=text, plan=category"])
    assert deploy_kwargs(args, Files())["schema"] == {"review": "text", "plan": "category"}
    (tmp_path / "kinds.toml").write_text('review = "text"\n')
    args = build_parser().parse_args(["deploy", "m.skops", "--schema", str(tmp_path / "kinds.toml")])
    assert deploy_kwargs(args, Files())["schema"] == {"review": "text"}
    args = build_parser().parse_args(["deploy", "m.skops", "--schema", "review:text"])
    with pytest.raises(deploykit.ConfigError, match="COLUMN=KIND pairs"):
        deploy_kwargs(args, Files())


def test_host_and_api_keys_on_the_command_line():
    from deploykit._cli import Files
    from deploykit._commands import deploy_kwargs

    plain = deploy_kwargs(build_parser().parse_args(["deploy", "m.skops"]), Files())
    assert plain["host"] == "127.0.0.1" and "auth" not in plain  # a redeploy keeps what the deployment had
    wide = deploy_kwargs(build_parser().parse_args(["deploy", "m.skops", "--host", "0.0.0.0", "--no-auth"]), Files())
    assert wide["host"] == "0.0.0.0" and wide["auth"] is False
    assert deploy_kwargs(build_parser().parse_args(["deploy", "m.skops", "--auth"]), Files())["auth"] is True


# -- init-ci ------------------------------------------------------------------------------------------
def test_init_ci_writes_a_workflow_that_runs_the_notebook(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "train.ipynb").write_text("{}")
    assert main(["init-ci", "notebooks/train.ipynb", "-p", "n_estimators", "300"]) == 0
    path = tmp_path / ".github" / "workflows" / "deploykit.yml"
    assert f"wrote {Path('.github/workflows/deploykit.yml')}" in capsys.readouterr().out
    text = path.read_text()
    assert text.startswith("# Generated by `deploykit init-ci`")
    workflow = yaml.safe_load(text)
    steps = workflow["jobs"]["check"]["steps"]
    run = next(s["run"] for s in steps if "deploykit run" in s.get("run", ""))
    assert run.strip() == ("deploykit run notebooks/train.ipynb --output deploykit-run/train.ipynb "
                           "--cards deploykit-run/cards --target local --stop -p n_estimators 300")
    assert "pull_request" in workflow[True] and "'deploykit[cli]'" in text  # YAML reads the key `on` as True
    assert main(["init-ci", "notebooks/train.ipynb"]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["init-ci", "notebooks/train.ipynb", "--keep"]) == 1
    assert "needs target='docker'" in capsys.readouterr().err
    assert main(["init-ci", "notebooks/train.ipynb", "--force", "--target", "docker", "--keep", "--runs-on", "self-hosted"]) == 0
    workflow = yaml.safe_load(path.read_text())
    job = workflow["jobs"]["deploy"]
    assert job["runs-on"] == "self-hosted" and "pull_request" not in workflow[True]
    assert "--stop" not in path.read_text() and "--target docker" in path.read_text()


# -- against a real deployment made from files -------------------------------------------------------
class Lines:
    """The lines a subprocess writes, read by a thread so a test can wait for one with a timeout."""

    def __init__(self, stream) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self._queue.put(line) for line in stream] + [self._queue.put(None)], daemon=True).start()

    def wait_for(self, timeout: float, want=lambda line: True) -> str:
        import queue

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError("the process closed its output:\n" + "".join(self.seen[-30:]))
            self.seen.append(line)
            if want(line):
                return line.rstrip("\n")
        raise AssertionError(f"no wanted line within {timeout} s; last lines:\n" + "".join(self.seen[-30:]))


def _unbuffered() -> dict:
    """The environment now (the isolated homes fixture has set it), with the child's output unbuffered."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def from_files(tmp_path_factory, churn, churn_model):
    """`deploykit deploy model.skops --train X.csv y.csv --test X.parquet y.parquet`, serving in a subprocess."""
    import skops.io

    folder = tmp_path_factory.mktemp("cli-files")
    X_train, X_test, y_train, y_test = churn
    X_train.to_csv(folder / "X_train.csv", index=False)
    y_train.to_frame().to_csv(folder / "y_train.csv", index=False)
    X_test.to_parquet(folder / "X_test.parquet")
    y_test.to_frame().to_parquet(folder / "y_test.parquet")
    (folder / "fields.json").write_text(json.dumps({"intended_use": "rank customers for retention calls"}))
    skops.io.dump(churn_model, folder / "model.skops")
    command = [DEPLOYKIT, "deploy", "model.skops", "--trust", "--name", "filecli", "--train", "X_train.csv", "y_train.csv",
               "--test", "X_test.parquet", "y_test.parquet", "--card", "fields.json"]
    proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_unbuffered())
    try:
        url = Lines(proc.stdout).wait_for(400, lambda line: line.startswith("http://"))
        yield {"proc": proc, "url": url, "folder": folder}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)


@pytest.mark.serve
def test_deploy_from_model_and_data_files(from_files, churn, churn_model):
    dep = next(d for d in deploykit.deployments() if d.name == "filecli")
    assert dep.url == from_files["url"] and from_files["proc"].poll() is None
    rows = churn[1].iloc[:20]
    assert dep.predict(rows).tolist() == churn_model.predict(rows).tolist()
    assert dep.card.to_dict()["intended_use"]["primary_uses"] == ["rank customers for retention calls"]


@pytest.mark.serve
def test_status(from_files, capsys):
    assert main(["status", "filecli"]) == 0
    out = capsys.readouterr().out
    assert f"url  {from_files['url']}" in out and "ready  yes" in out and "version  1" in out
    assert main(["status", "filecli", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["live"] is True and status["target"] == "local" and "parity ok" in status["parity"]


@pytest.mark.serve
def test_predict_and_explain_read_data_files(from_files, churn, churn_model, tmp_path, capsys):
    rows = churn[1].iloc[:6]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    rows.to_parquet(tmp_path / "rows.parquet")
    (tmp_path / "rows.json").write_text(rows.iloc[:2].to_json(orient="records"))
    assert main(["predict", "filecli", str(tmp_path / "rows.csv")]) == 0
    assert json.loads(capsys.readouterr().out) == {"predictions": churn_model.predict(rows).tolist()}
    assert main(["predict", "filecli", str(tmp_path / "rows.parquet"), "--proba"]) == 0
    probabilities = np.asarray(json.loads(capsys.readouterr().out)["probabilities"])
    assert np.abs(probabilities - churn_model.predict_proba(rows)).max() <= 1e-6
    assert main(["explain", "filecli", str(tmp_path / "rows.json")]) == 0
    body = json.loads(capsys.readouterr().out)
    values, base, outputs = (np.asarray(body[k]) for k in ("values", "base_values", "outputs"))
    assert values.shape == (2, rows.shape[1]) and np.allclose(base + values.sum(axis=1), outputs, atol=1e-6)


@pytest.mark.serve
def test_bad_rows_are_one_line_errors(from_files, tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps([{"tenure_months": "soon"}]))
    assert main(["predict", "filecli", str(tmp_path / "bad.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "row 0" in err and err.count("\n") == 1


@pytest.mark.serve
def test_a_bad_csv_cell_is_named_by_row_and_cell(from_files, churn, tmp_path, capsys):
    rows = churn[1].iloc[:5].copy().astype({"age": object})
    rows.iloc[3, rows.columns.get_loc("age")] = "forty"
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["predict", "filecli", str(tmp_path / "rows.csv")]) == 1
    err = capsys.readouterr().err
    assert "row 3 (line 5), column 'age': 'forty' is not an integer" in err and err.count("\n") == 1


@pytest.mark.serve
def test_logs_and_follow(from_files):
    tail = subprocess.run([DEPLOYKIT, "logs", "filecli", "--tail", "3"], capture_output=True, text=True, check=True).stdout
    dep = next(d for d in deploykit.deployments() if d.name == "filecli")
    assert 1 <= len(tail.splitlines()) <= 3 and tail.splitlines() == dep.logs(3).splitlines()
    follower = subprocess.Popen([DEPLOYKIT, "logs", "filecli", "--follow", "--tail", "1"], stdout=subprocess.PIPE, text=True,
                                env=_unbuffered())
    lines = Lines(follower.stdout)
    try:
        assert lines.wait_for(60) == tail.splitlines()[-1]
        with open(dep.handle.log_path, "a") as log:  # the file the service writes to: a line appears as it would from it
            log.write("a line written after the follow started\n")
        assert lines.wait_for(30) == "a line written after the follow started"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 0
    finally:
        if follower.poll() is None:
            follower.kill()


@pytest.mark.serve
def test_card(from_files, tmp_path, monkeypatch, capsys):
    assert main(["card", "filecli"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<ModelCard filecli v1 · binary") and "warning:" in out
    assert main(["card", "filecli", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_details"]["name"] == "filecli"
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda address: opened.append(address) or True)
    assert main(["card", "filecli", "--open", "--save", str(tmp_path / "review")]) == 0
    assert opened == [f"{from_files['url']}/card"]
    assert "retention calls" in (tmp_path / "review" / "card.html").read_text()


@pytest.mark.serve
def test_list_then_stop_ends_the_serving_process(from_files, capsys):
    assert main(["list"]) == 0
    assert f"filecli\tv1\tlocal\t{from_files['url']}" in capsys.readouterr().out
    assert main(["stop", "filecli"]) == 0
    assert capsys.readouterr().out == "stopped filecli\n"
    assert from_files["proc"].wait(30) == 0  # `deploykit deploy` served until its service stopped
    assert "filecli" not in [d.name for d in deploykit.deployments()]


@pytest.mark.serve
def test_card_of_a_saved_package(from_files, monkeypatch, capsys):
    assert "filecli" not in [d.name for d in deploykit.deployments()]
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda address: opened.append(address) or True)
    assert main(["card", "filecli", "--open", "--format", "markdown"]) == 0
    assert "retention calls" in capsys.readouterr().out
    package = deploykit.Package.load("filecli")
    assert opened == [(package.path / "model" / "card.html").resolve().as_uri()]
