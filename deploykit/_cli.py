"""The ``deploykit`` command line, and the one argument grammar it shares with ``%deploy``.

``build_parser`` defines every command and option once; ``%deploy`` splits its line with ``shlex`` and
calls the same parser, so the two cannot drift. :mod:`deploykit._commands` runs a parsed command against
the core; this module turns the CLI's words into files (:class:`Files`) and prints results.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._commands import COMMANDS, ArgumentError, Names, deploy_kwargs, execute  # noqa: F401 - the magic imports these

# Each command's examples, as typed in a terminal and in a notebook (None: the command is terminal-only).
EXAMPLES: dict[str, tuple[list[str], list[str] | None]] = {
    "deploy": (
        ["deploykit deploy model.skops --trust --name churn --train X_train.csv y_train.csv --test X_test.parquet y_test.parquet",
         "deploykit deploy model.joblib --trust --name churn --train X_train.csv y_train.csv --sensitive age --profile internal",
         "deploykit deploy churn --target docker          # the newest saved version of package 'churn'"],
        ["%deploy model --name churn --train X_train y_train --test X_test y_test",
         "%deploy model --name churn --train X_train y_train --test X_test y_test --sensitive age --card fields --profile internal",
         "%deploy pkg --target docker --base-image local/python:3.11-bookworm",
         "%deploy --panel model --train X_train y_train --test X_test y_test   # a form instead of deploying at once"],
    ),
    "list": (["deploykit list"], ["%deploy list"]),
    "status": (["deploykit status churn", "deploykit status churn --json"], ["%deploy status churn"]),
    "logs": (["deploykit logs churn --tail 100", "deploykit logs churn --follow      # until Ctrl-C"],
             ["%deploy logs churn", "%deploy logs churn --follow        # until the kernel is interrupted"]),
    "predict": (["deploykit predict churn customers.csv", "deploykit predict churn customers.parquet --proba"],
                ["%deploy predict churn X_test", "%deploy predict churn X_test --proba"]),
    "explain": (["deploykit explain churn customer.json"], ["%deploy explain churn X_test"]),
    "card": (["deploykit card churn", "deploykit card churn --open", "deploykit card churn --format markdown > CARD.md",
              "deploykit card churn --save review/"],
             ["%deploy card churn", "%deploy card churn --open"]),
    "rollback": (["deploykit rollback churn", "deploykit rollback churn --to 3"],
                 ["%deploy rollback churn", "%deploy rollback churn --to 3"]),
    "stop": (["deploykit stop churn"], ["%deploy stop churn"]),
    "build": (["deploykit build churn", "deploykit build churn --version 2 --tag registry.local/churn:2"],
              ["%deploy build churn", "%deploy build pkg --tag registry.local/churn:2"]),
    "base-image": (["deploykit base-image --tag local/python:3.11-bookworm"], ["%deploy base-image"]),
    "run": (["deploykit run train.ipynb", "deploykit run train.ipynb -p n_estimators 300 -p data data/2024.csv --target docker",
             "deploykit run train.ipynb --output executed.ipynb --cards cards/ --stop   # CI: check it serves, then stop"],
            ["%deploy run train.ipynb -p n_estimators 300"]),
    "init-ci": (["deploykit init-ci train.ipynb", "deploykit init-ci train.ipynb --target docker --keep --runs-on self-hosted"],
                ["%deploy init-ci train.ipynb"]),
    "demo": (["deploykit demo", "deploykit demo --keep --target local"], None),
}

MAGIC_NOTE = "In %deploy, MODEL, X, y, DATA and FIELDS name notebook variables."
CLI_NOTE = ("In the CLI, MODEL is a model file (.skops, .joblib, .pkl: see --trust) or a saved package's name or "
            "folder; X, y and DATA are .csv, .parquet or .json files; FIELDS is a .json or .toml file.")


def build_parser(prog: str = "deploykit") -> argparse.ArgumentParser:
    """The grammar of the CLI (``prog="deploykit"``) and of ``%deploy`` (``prog="%deploy"``)."""
    magic = prog.startswith("%")
    parser = _Parser(prog=prog, description="Turn a fitted model into a live, explained BentoML service.",
                     epilog=(MAGIC_NOTE if magic else CLI_NOTE) + f"\n`{prog} COMMAND --help` shows a command's options.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        cli, notebook = EXAMPLES[name]
        examples = (notebook or [f"(terminal only) {cli[0]}"]) if magic else cli
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                           epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        return p

    for name, help, add_arguments in _COMMANDS:
        add_arguments(command(name, help))
    return parser


def _name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="deployment name")


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


def _status_arguments(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON (CLI)")


def _logs_arguments(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--tail", type=int, default=50, metavar="N", help="show the last N lines (default: 50)")
    p.add_argument("--follow", "-f", action="store_true", help="then keep printing new lines until Ctrl-C")


def _rows_arguments(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("data", metavar="DATA", help="rows: a DataFrame variable (%%deploy); a .csv/.parquet/.json file (CLI)")


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    _rows_arguments(p)
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels (classifiers)")


def _card_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="deployment name, or saved package name")
    p.add_argument("--open", action="store_true", help="open the card's HTML page in a web browser")
    p.add_argument("--format", choices=["summary", "markdown", "html", "json"], default="summary",
                   help="what the CLI prints (default: summary)")
    p.add_argument("--save", metavar="DIR", help="write card.html, card.md, card.json and the plots into DIR")


def _rollback_arguments(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--to", metavar="VERSION", help="the package version to serve (default: the release before the current one)")


def _build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", help="package name (newest version) or folder; in %%deploy also a Package variable")
    p.add_argument("--version", help="package version (default: the newest)")
    p.add_argument("--base-image", help="base image (default: $DEPLOYKIT_BASE_IMAGE, config, python:X.Y-slim)")
    p.add_argument("--tag", help="image tag (default: deploykit/NAME:VERSION)")


def _base_image_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", help="image tag (default: local/python:X.Y-SUITE)")
    p.add_argument("--suite", help="Debian suite (default: the one whose Python matches this one)")
    p.add_argument("--mirror", help="Debian mirror (default: the one apt uses here)")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C")
    p.add_argument("--target", default="auto", choices=["auto", "local", "docker"],
                   help="auto (default): docker when an engine and a base image are usable, else local")


def _deploy_arguments(p: argparse.ArgumentParser) -> None:
    from ._card._profiles import PROFILES

    p.add_argument("model", metavar="MODEL", help="a fitted model or saved package (see the note at the end of --help)")
    p.add_argument("--name", help="service name: lowercase letters, digits, - and _ (required with a model)")
    p.add_argument("--train", nargs="+", metavar=("X", "Y"), help="training data: X [y]; the input schema comes from X")
    p.add_argument("--test", nargs="+", metavar=("X", "Y"), help="held-out data: X [y], for the parity check, metrics and card")
    p.add_argument("--target", default="local", choices=["local", "docker"], help="where to run it (default: local)")
    p.add_argument("--port", type=int, help="port to serve on (default: a free one)")
    p.add_argument("--base-image", help="docker: base image (default: $DEPLOYKIT_BASE_IMAGE, config, python:X.Y-slim)")
    p.add_argument("--no-explain", dest="explain", action="store_false", help="do not serve /explain")
    p.add_argument("--sensitive", nargs="+", metavar="COLUMN", help="columns of the test data to measure fairness across (needs --test X y)")
    p.add_argument("--card", metavar="FIELDS", help="model card fields (intended_use, owners, limitations, ...): "
                   "a dict variable (%%deploy); a .json/.toml file (CLI)")
    p.add_argument("--profile", choices=list(PROFILES), help="refuse to deploy while the model card has errors under this profile")
    p.add_argument("--schema", metavar="KINDS", help="string columns as free text or categories, e.g. review=text,plan=category; "
                   "also a dict variable (%%deploy) or a .json/.toml file (CLI)")
    p.add_argument("--panel", action="store_true", help="%%deploy only: open the deploy panel widget with this model and data")
    p.add_argument("--trust", action="store_true", help="CLI: load a pickle/joblib model file (loading runs its code) "
                   "or a skops file holding types skops does not trust by default")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb to execute; it declares its models by packaging them "
                   "(deploykit.package, deploykit.deploy or %%deploy)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="set a parameter (papermill: the cell tagged 'parameters'); VALUE is read as a Python literal if it is one")
    p.add_argument("--output", metavar="OUT.ipynb", help="where to write the executed notebook (default: $DEPLOYKIT_HOME/runs/)")
    p.add_argument("--target", default="local", choices=["local", "docker"], help="where to deploy (default: local)")
    p.add_argument("--stop", action="store_true", help="stop the deployments once they pass their checks (a CI check); "
                   "otherwise local ones serve until Ctrl-C and docker ones keep running")
    p.add_argument("--cards", metavar="DIR", help="also write each package's model card into DIR/NAME/")


def _init_ci_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK", help="the notebook CI runs, relative to the repository root")
    p.add_argument("--output", default=".github/workflows/deploykit.yml", metavar="PATH",
                   help="where to write the workflow (default: .github/workflows/deploykit.yml)")
    p.add_argument("--target", default="local", choices=["local", "docker"], help="where `deploykit run` deploys (default: local)")
    p.add_argument("--keep", action="store_true", help="leave deployments running after the job (docker on a self-hosted "
                   "runner); otherwise the job checks that they serve, then stops them")
    p.add_argument("--runs-on", default="ubuntu-latest", help="the runner label (default: ubuntu-latest)")
    p.add_argument("--python", help="Python version on the runner (default: this one's major.minor)")
    p.add_argument("--branch", default="main", help="the branch whose pushes run it (default: main)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), help="a notebook parameter for the run")
    p.add_argument("--force", action="store_true", help="write over an existing workflow file")


# (command, what it does, its arguments), in the order --help lists them
_COMMANDS = [
    ("deploy", "package and serve a model, or serve a saved package", _deploy_arguments),
    ("list", "list running deployments", _nothing),
    ("status", "show a deployment's version, URL, health and model", _status_arguments),
    ("logs", "show a deployment's log", _logs_arguments),
    ("predict", "predict rows with a running deployment", _predict_arguments),
    ("explain", "SHAP contributions of rows from a running deployment", _rows_arguments),
    ("card", "show the model card of a deployment or saved package", _card_arguments),
    ("rollback", "serve the previous version again (health-gated: on failure the current one keeps serving)", _rollback_arguments),
    ("stop", "stop a deployment", _name),
    ("build", "build a package's Docker image", _build_arguments),
    ("base-image", "build a Python base image from Debian packages (no registry needed)", _base_image_arguments),
    ("run", "execute a notebook headless (papermill) and deploy the packages it makes", _run_arguments),
    ("init-ci", "write a GitHub Actions workflow that runs a notebook with `deploykit run`", _init_ci_arguments),
    ("demo", "train a churn model, deploy it, show a prediction and its explanation", _demo_arguments),
]


class HelpShown(Exception):
    """``--help`` was printed: the caller returns (the magic must not exit the kernel)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise ArgumentError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            print(message, file=sys.stderr, end="")
        raise HelpShown(status)


def grammar_help(prog: str) -> str:
    """Every command's help, as ``%deploy?`` shows it."""
    parser = build_parser(prog)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return "\n\n".join([parser.format_help(), *(p.format_help() for p in commands.choices.values())])


# -- the CLI's names are files ------------------------------------------------------------------------
class Files:
    """Turns the CLI's words into objects: model and data files, saved packages."""

    def model(self, token: str, *, trust: bool) -> Any:
        from ._files import is_model_file, load_model
        from ._package import Package

        return load_model(token, trust=trust) if is_model_file(token) else Package.load(token)

    def frame(self, token: str, schema: dict | None = None) -> Any:
        from ._files import read_frame

        return read_frame(token, schema)

    def labels(self, token: str) -> Any:
        from ._files import read_labels

        return read_labels(token)

    def fields(self, token: str) -> dict:
        from ._files import read_fields

        return read_fields(token)

    def schema(self, token: str) -> dict:
        from ._files import read_schema

        return read_schema(token)

    def package(self, token: str, version: str | None) -> Any:
        from ._package import Package

        return Package.load(token, version=version)


# -- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from .exceptions import DeployKitError

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except ArgumentError as exc:
        print(exc, file=sys.stderr)
        return 2
    except HelpShown as shown:
        return shown.args[0]
    try:
        return _show(args, execute(args, Files())) or 0
    except (DeployKitError, ArgumentError) as exc:
        if args.debug:
            raise
        label = "\033[31merror:\033[0m" if sys.stderr.isatty() else "error:"
        print(f"{label} {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away, e.g. `deploykit logs churn | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush does not fail
        return 0


def _show(args: argparse.Namespace, result: Any) -> int | None:
    show = _SHOW.get(args.command)
    return show(args, result) if show else None


def _show_deployed(args, dep) -> None:
    print(dep.url)
    if dep.target == "local":
        _serve_until_interrupted(dep)


def _show_list(args, deployments) -> None:
    for dep in deployments:
        print(f"{dep.name}\tv{dep.version}\t{dep.target}\t{dep.url}")


def status_of(dep) -> dict:
    """What ``deploykit status`` reports about a deployment."""
    health, m = dep.health(), dep.package.manifest
    card = m.get("card") or {}
    return {
        "name": dep.name, "version": dep.version, "target": dep.target, "url": dep.url,
        "live": health["live"], "ready": health["ready"], "started": dep.started, "package": str(dep.package.path),
        "model": f"{m.get('estimator', '?').rsplit('.', 1)[-1]} ({m.get('task', '?')})",
        "parity": dep.package.parity_summary() if m.get("parity") else None,
        "card": f"{card.get('errors', 0)} errors, {card.get('warnings', 0)} warnings ({card.get('profile') or 'internal'})" if card else None,
    }


def _show_status(args, dep) -> int:
    status = status_of(dep)
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        for key, value in status.items():
            shown = ("yes" if value else "NO") if isinstance(value, bool) else value
            print(f"{key:>8}  {shown}")
    if not status["ready"]:
        print(f"{dep.name} is not ready; `deploykit logs {dep.name}` shows why", file=sys.stderr)
        return 1
    return 0


def _show_logs(args, logs) -> None:
    if isinstance(logs, str):
        print(logs.rstrip("\n"))
        return
    try:
        for line in logs:
            print(line, flush=True)
    except KeyboardInterrupt:
        pass


def _show_predictions(args, values) -> None:
    key = "probabilities" if args.proba else "predictions"
    print(json.dumps({key: values.tolist()}))


def _show_explanation(args, explanation) -> None:
    print(json.dumps({
        "feature_names": explanation.feature_names, "values": explanation.values.tolist(),
        "base_values": explanation.base_values.tolist(), "outputs": explanation.outputs.tolist(),
        "output": explanation.output, "explainer": explanation.explainer, "classes": explanation.classes,
    }))


def _show_card(args, card) -> None:
    if args.format == "markdown":
        print(card.to_markdown(images=None))
    elif args.format == "html":
        print(card.to_html())
    elif args.format == "json":
        print(card.to_json(), end="")
    else:
        print(repr(card))
        for finding in card.findings:
            print(f"  {finding.severity}: {finding.field}: {finding.message}")
    if args.save:
        print(f"saved to {args.save}", file=sys.stderr)


def _show_stopped(args, dep) -> None:
    print(f"stopped {dep.name}")


def _show_run(args, result) -> None:
    print(f"executed {result.notebook} → {result.output}")
    for dep in result.deployments:
        print(f"{dep.name}\tv{dep.version}\t{dep.target}\t{dep.url}\t{'stopped after its checks' if args.stop else 'serving'}")
    live_local = [d for d in result.deployments if d.target == "local" and not d.stopped]
    if live_local:
        _serve_until_interrupted(*live_local)


def _show_path(args, path) -> None:
    print(f"wrote {path}")


_SHOW = {
    "deploy": _show_deployed, "rollback": _show_deployed, "list": _show_list, "status": _show_status,
    "logs": _show_logs, "predict": _show_predictions, "explain": _show_explanation, "card": _show_card,
    "stop": _show_stopped, "run": _show_run, "init-ci": _show_path,
    "build": lambda args, image: print(image.tag), "base-image": lambda args, tag: print(tag),
}


def _serve_until_interrupted(*deps) -> None:
    """Local services end with the process that started them: keep this one alive until Ctrl-C."""
    import time

    print("serving; Ctrl-C stops it", file=sys.stderr)
    try:
        while any(dep.handle.exited() is None for dep in deps):
            time.sleep(1)
    except KeyboardInterrupt:
        for dep in deps:
            dep.stop()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
