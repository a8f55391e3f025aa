"""The deploykit command line: the same grammar as %deploy, short errors, exit codes."""

import subprocess
import sys

import pytest

import deploykit
from deploykit._cli import build_parser, main


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "deploykit._cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("deploy", "list", "stop", "demo"):
        assert command in out


def test_the_magic_and_cli_share_one_parser():
    args = build_parser().parse_args(["deploy", "clf", "--name", "churn", "--train", "X", "y", "--no-explain"])
    assert (args.model, args.name, args.train, args.explain, args.target) == ("clf", "churn", ["X", "y"], False, "local")


def test_errors_are_short_with_exit_code_1(capsys):
    assert main(["stop", "nothing-here"]) == 1
    err = capsys.readouterr().err
    assert "no running deployment named 'nothing-here'" in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["deploy", "no-such-package"]) == 1
    assert "no package named 'no-such-package'" in capsys.readouterr().err
    assert main(["bogus"]) == 2


@pytest.mark.serve
def test_list_and_stop(churn_package, capsys):
    dep = deploykit.deploy(churn_package, name="cli", verbose=False)
    assert main(["list"]) == 0
    assert f"cli\tv{dep.version}\tlocal\t{dep.url}" in capsys.readouterr().out
    assert main(["stop", "cli"]) == 0
    assert not dep.health()["live"]
