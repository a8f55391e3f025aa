"""The one argument grammar of the ``deploykit`` command and of ``%deploy``.

``build_parser`` defines every command and option once; the CLI (:mod:`deploykit._cli`) parses
``sys.argv`` with it, and ``%deploy`` (:mod:`deploykit._magic`) splits its line with ``shlex`` and calls
the same parser, so the two cannot drift. Neither front end imports the other: both import this
module and :mod:`deploykit._commands`, which runs a parsed command against the core. Target choices
come from the target registry.
"""

from __future__ import annotations

import argparse
import sys

from . import _targets
from ._security import commands as _security  # the keys and audit verbs


class ArgumentError(Exception):
    """Arguments that do not parse or do not fit together (raised, never exits: the magic must not exit the kernel)."""


# Each command's examples, as typed in a terminal and in a notebook (None: the command is terminal-only).
EXAMPLES: dict[str, tuple[list[str], list[str] | None]] = {
    "deploy": (
        ["deploykit deploy model.skops --trust --name churn --train X_train.csv y_train.csv --test X_test.parquet y_test.parquet",
         "deploykit deploy model.joblib --trust --name churn --train X_train.csv y_train.csv --sensitive age --profile internal",
         "deploykit deploy churn --target docker          # the newest saved version of package 'churn'",
         "deploykit deploy churn --strategy canary --traffic 0.1 --steps 0.1 0.5 1 --guardrails error_rate=0.01"],
        ["%deploy model --name churn --train X_train y_train --test X_test y_test",
         "%deploy model --name churn --train X_train y_train --test X_test y_test --sensitive age --card fields --profile internal",
         "%deploy pkg --target docker --base-image local/python:3.11-bookworm",
         "%deploy pkg --target swarm --replicas 3",
         "%deploy new_pkg --name churn --strategy shadow",
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
              "deploykit card churn --save review/",
              "deploykit card approve churn --version 3 --reviewer 'Ana Ruiz <ana@bank.example>' --role 'model validation' "
              "--decision approved --notes 'see MRM-231'"],
             ["%deploy card churn", "%deploy card churn --open",
              "%deploy card approve churn --reviewer 'Ana Ruiz <ana@bank.example>' --role 'model validation' --decision approved"]),
    "rollback": (["deploykit rollback churn", "deploykit rollback churn --to 3"],
                 ["%deploy rollback churn", "%deploy rollback churn --to 3"]),
    "promote": (["deploykit promote churn"], ["%deploy promote churn"]),
    "monitor": (["deploykit monitor churn", "deploykit monitor churn --window 1h --json"],
                ["%deploy monitor churn", "%deploy monitor churn --window 600"]),
    "compare": (["deploykit compare churn", "deploykit compare churn --json"], ["%deploy compare churn"]),
    "scale": (["deploykit scale churn 3"], ["%deploy scale churn 3"]),
    "stop": (["deploykit stop churn"], ["%deploy stop churn"]),
    "build": (["deploykit build churn", "deploykit build churn --version 2 --tag registry.local/churn:2"],
              ["%deploy build churn", "%deploy build pkg --tag registry.local/churn:2"]),
    "base-image": (["deploykit base-image --tag local/python:3.11-bookworm"], ["%deploy base-image"]),
    "export": (["deploykit export churn --format edge -o churn-edge      # writes churn-edge/ and churn-edge.zip"],
               ["%deploy export churn --format edge -o churn-edge"]),
    "run": (["deploykit run train.ipynb", "deploykit run train.ipynb -p n_estimators 300 -p data data/2024.csv --target docker",
             "deploykit run train.ipynb --output executed.ipynb --cards cards/ --stop   # CI: check it serves, then stop"],
            ["%deploy run train.ipynb -p n_estimators 300"]),
    "init-ci": (["deploykit init-ci train.ipynb", "deploykit init-ci train.ipynb --target docker --keep --runs-on self-hosted"],
                ["%deploy init-ci train.ipynb"]),
    "demo": (["deploykit demo", "deploykit demo --keep --target local"], None),
    "manifests": (["deploykit manifests churn --kind kubernetes --image registry.example.com/churn:3 -o k8s/",
                   "deploykit manifests churn --kind kserve --image registry.example.com/churn:3 -o kserve/ --namespace ml"],
                  ["%deploy manifests churn --kind kubernetes --image registry.example.com/churn:3 -o k8s/"]),
    "batch": (["deploykit batch churn customers.parquet scored.parquet",
               "deploykit batch churn big/ scored/ --engine dask --scheduler tcp://10.0.0.5:8786",
               "deploykit batch churn customers.csv scored.csv --explain --chunk-rows 10000"],
              ["%deploy batch churn customers.parquet scored.parquet", "%deploy batch pkg big/ scored/ --engine dask"]),
    "keys": _security.KEYS_EXAMPLES,
    "audit": _security.AUDIT_EXAMPLES,
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
    from ._card._approvals import DECISIONS

    p.add_argument("name", help="deployment name, or saved package name; or `approve` followed by the name")
    p.add_argument("approve_name", nargs="?", metavar="NAME", help="with `approve`: the package whose card is decided on")
    p.add_argument("--version", help="saved package version (default: the running deployment's, else the newest)")
    p.add_argument("--open", action="store_true", help="open the card's HTML page in a web browser")
    p.add_argument("--format", choices=["summary", "markdown", "html", "json"], default="summary",
                   help="what the CLI prints (default: summary)")
    p.add_argument("--save", metavar="DIR", help="write card.html, card.md, card.json and the plots into DIR")
    review = p.add_argument_group("card approve NAME: record a review decision on the card")
    review.add_argument("--reviewer", help="who decides: 'Name <email>' (not the model's author)")
    review.add_argument("--role", help="the reviewer's role, e.g. 'model validation'")
    review.add_argument("--decision", choices=DECISIONS, default="approved", help="approved (default), rejected or conditions")
    review.add_argument("--notes", help="why; required for rejected and conditions")
    review.add_argument("--key", metavar="PATH", help="the reviewer's Ed25519 private key (PEM) that signs the decision "
                        "(default: $DEPLOYKIT_SIGNING_KEY, else this machine's signing key)")


def _scale_arguments(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("replicas", type=int, metavar="N", help="how many replicas of the live version to run")


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
    p.add_argument("--keep", action="store_true", help="leave the demo deployment running (`deploykit stop churn-demo` stops it)")
    p.add_argument("--target", default="auto", choices=["auto", *_targets.names()],
                   help="auto (default): docker when an engine and a base image are usable, else local")


def _deploy_arguments(p: argparse.ArgumentParser) -> None:
    from ._card._profiles import PROFILES

    p.add_argument("model", metavar="MODEL", help="a fitted model or saved package (see the note at the end of --help)")
    p.add_argument("--name", help="service name: lowercase letters, digits, - and _ (required with a model)")
    p.add_argument("--train", nargs="+", metavar=("X", "Y"), help="training data: X [y]; the input schema comes from X")
    p.add_argument("--test", nargs="+", metavar=("X", "Y"), help="held-out data: X [y], for the parity check, metrics and card")
    p.add_argument("--target", default="local", choices=_targets.names(), help="where to run it (default: local)")
    p.add_argument("--port", type=int, help="port to serve on (default: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface, which turns API keys on)")
    p.add_argument("--base-image", help="docker: base image (default: $DEPLOYKIT_BASE_IMAGE, config, python:X.Y-slim)")
    p.add_argument("--replicas", type=int, metavar="N", help="swarm: replicas of the new version (default: as many as the "
                   "live version runs, else 2)")
    p.add_argument("--no-explain", dest="explain", action="store_false", help="do not serve /explain")
    p.add_argument("--image", metavar="REGISTRY/NAME:TAG", help="kubernetes: the image reference the cluster pulls "
                   "(built and pushed there unless --no-push)")
    p.add_argument("--no-push", dest="push", action="store_false", default=None,
                   help="kubernetes: the image is in the registry already")
    p.add_argument("--context", help="kubernetes: the kubeconfig context (default: the current one)")
    p.add_argument("--namespace", help="kubernetes: the namespace (default: default)")
    p.add_argument("--sensitive", nargs="+", metavar="COLUMN", help="columns of the test data to measure fairness across (needs --test X y)")
    p.add_argument("--card", metavar="FIELDS", help="model card fields (intended_use, owners, limitations, ...): "
                   "a dict variable (%%deploy); a .json/.toml file (CLI)")
    p.add_argument("--profile", choices=list(PROFILES), help="refuse to deploy while the model card has errors under this profile")
    p.add_argument("--schema", metavar="KINDS", help="string columns as free text or categories, e.g. review=text,plan=category; "
                   "also a dict variable (%%deploy) or a .json/.toml file (CLI)")
    p.add_argument("--strategy", default="replace", choices=["replace", "shadow", "canary", "ab"],
                   help="replace (default), or run the new version as a candidate beside the live one")
    p.add_argument("--sample", type=float, metavar="F", help="shadow: the fraction of requests copied to the candidate (default 1)")
    p.add_argument("--traffic", type=float, metavar="F", help="canary, ab: the fraction the candidate answers")
    p.add_argument("--steps", type=float, nargs="+", metavar="F", help="canary: the fractions it moves through, ending at 1")
    p.add_argument("--interval", type=float, metavar="SECONDS", help="canary: how long each step lasts (default 60)")
    p.add_argument("--guardrails", metavar="K=V[,K=V]", type=_guardrails,
                   help="canary: error_rate=0.01,p99_ms=250,min_requests=50")
    p.add_argument("--sticky", metavar="FIELD", help="ab: the instance field that assigns a unit to a variant")
    p.add_argument("--capture", type=float, default=1.0, metavar="F",
                   help="the fraction of answered requests recorded for monitoring (default 1; 0 turns it off)")
    p.add_argument("--auth", dest="auth", action="store_true", default=None,
                   help="ask for an API key on every route but /livez and /readyz (on by default beyond localhost)")
    p.add_argument("--no-auth", dest="auth", action="store_false", help="do not ask for API keys")
    p.add_argument("--panel", action="store_true", help="%%deploy only: open the deploy panel widget with this model and data")
    p.add_argument("--trust", action="store_true", help="CLI: load a pickle/joblib model file (loading runs its code) "
                   "or a skops file holding types skops does not trust by default")


def _guardrails(text: str) -> dict:
    """``error_rate=0.01,p99_ms=250`` as a dict of numbers."""
    out = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        try:
            out[key.strip()] = float(value) if sep else None
        except ValueError:
            raise argparse.ArgumentTypeError(f"guardrail {part!r} is not KEY=NUMBER") from None
        if out[key.strip()] is None:
            raise argparse.ArgumentTypeError(f"guardrail {part!r} is not KEY=NUMBER")
    return out


def _window(text: str):
    """A monitoring window: a row count (``600``) or a duration (``1h``, ``30m``, ``7d``)."""
    return int(text) if text.isdigit() else text


def _monitor_arguments(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--window", type=_window, metavar="W", help="the last N rows (600) or a duration (1h); default: all captured")
    p.add_argument("--json", action="store_true", help="print the report as JSON (CLI)")


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON (CLI)")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb to execute; it declares its models by packaging them "
                   "(deploykit.package, deploykit.deploy or %%deploy)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="set a parameter (papermill: the cell tagged 'parameters'); VALUE is read as a Python literal if it is one")
    p.add_argument("--output", metavar="OUT.ipynb", help="where to write the executed notebook (default: $DEPLOYKIT_HOME/runs/)")
    p.add_argument("--target", default="local", choices=_targets.names(), help="where to deploy (default: local)")
    p.add_argument("--stop", action="store_true", help="stop the deployments once they pass their checks (a CI check); "
                   "otherwise they keep running (`deploykit stop NAME` stops one)")
    p.add_argument("--cards", metavar="DIR", help="also write each package's model card into DIR/NAME/")


def _init_ci_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK", help="the notebook CI runs, relative to the repository root")
    p.add_argument("--output", default=".github/workflows/deploykit.yml", metavar="PATH",
                   help="where to write the workflow (default: .github/workflows/deploykit.yml)")
    p.add_argument("--target", default="local", choices=_targets.names(), help="where `deploykit run` deploys (default: local)")
    p.add_argument("--keep", action="store_true", help="leave deployments running after the job (docker on a self-hosted "
                   "runner); otherwise the job checks that they serve, then stops them")
    p.add_argument("--runs-on", default="ubuntu-latest", help="the runner label (default: ubuntu-latest)")
    p.add_argument("--python", help="Python version on the runner (default: this one's major.minor)")
    p.add_argument("--branch", default="main", help="the branch whose pushes run it (default: main)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), help="a notebook parameter for the run")
    p.add_argument("--force", action="store_true", help="write over an existing workflow file")


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", help="package name (newest version) or folder; in %%deploy also a Package variable")
    p.add_argument("--version", help="package version (default: the newest)")
    p.add_argument("--format", required=True, choices=["edge"],
                   help="edge: the compiled model, input schema, parity proof, card and a predict.py needing only numpy and its engine")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write (DIR.zip is written beside it)")


def _manifests_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", help="package name (newest version) or folder; in %%deploy also a Package variable")
    p.add_argument("--kind", default="kubernetes", choices=["kubernetes", "kserve"], help="what to write (default: kubernetes)")
    p.add_argument("--image", required=True, metavar="REGISTRY/IMAGE:TAG", help="the image the cluster pulls")
    p.add_argument("-o", "--out", metavar="DIR", help="folder to write into (default: ./NAME-KIND/)")
    p.add_argument("--version", help="package version (default: the newest)")
    p.add_argument("--namespace", help="namespace written into each manifest (default: none, kubectl's)")
    p.add_argument("--replicas", type=int, help="replicas, and the autoscaler's minimum (default: 2)")
    p.add_argument("--ingress-host", metavar="HOST", help="also write an Ingress for HOST")


def _batch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", help="package name (newest version) or folder; in %%deploy also a Package variable")
    p.add_argument("source", metavar="IN", help="a .csv or .parquet file, or a folder of .parquet parts")
    p.add_argument("destination", metavar="OUT", help="a .csv or .parquet file, or a folder for .parquet parts; "
                   "rejected rows go to OUT.rejects.csv|parquet")
    p.add_argument("--engine", default="local", choices=["local", "dask"], help="where to score (default: local)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask: scheduler address (default: a local cluster)")
    p.add_argument("--explain", action="store_true", help="add SHAP columns shap_<column>")
    p.add_argument("--chunk-rows", type=int, default=100_000, metavar="N", help="rows per chunk (default: 100000)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local: processes scoring chunks (default: 1, "
                   "this one, two chunks at a time; more for a model whose predict holds the GIL)")
    p.add_argument("--version", help="package version (default: the newest)")


# (command, what it does, its arguments), in the order --help lists them
_COMMANDS = [
    ("deploy", "package and serve a model, or serve a saved package", _deploy_arguments),
    ("list", "list running deployments", _nothing),
    ("status", "show a deployment's version, URL, health and model", _status_arguments),
    ("logs", "show a deployment's log", _logs_arguments),
    ("predict", "predict rows with a running deployment", _predict_arguments),
    ("explain", "SHAP contributions of rows from a running deployment", _rows_arguments),
    ("card", "show the model card of a deployment or saved package", _card_arguments),
    ("rollback", "serve the previous version again (health-gated: on failure the current one keeps serving), "
                 "or end a running experiment", _rollback_arguments),
    ("promote", "make a deployment's candidate (shadow, canary, A/B) live, health-gated", _name),
    ("compare", "compare a deployment's live version and its candidate on real traffic", _compare_arguments),
    ("monitor", "drift and live performance of what a deployment answered", _monitor_arguments),
    ("scale", "run N replicas of a deployment's live version (on a target that scales)", _scale_arguments),
    ("stop", "stop a deployment", _name),
    ("build", "build a package's Docker image", _build_arguments),
    ("base-image", "build a Python base image from Debian packages (no registry needed)", _base_image_arguments),
    ("run", "execute a notebook headless (papermill) and deploy the packages it makes", _run_arguments),
    ("init-ci", "write a GitHub Actions workflow that runs a notebook with `deploykit run`", _init_ci_arguments),
    ("demo", "train a churn model, deploy it, show a prediction and its explanation", _demo_arguments),
    ("export", "write a package in another form: an edge bundle that predicts without a server", _export_arguments),
    ("manifests", "write a package's Kubernetes or KServe manifests", _manifests_arguments),
    ("batch", "score a CSV or Parquet table with a package; bad rows go to a rejects file", _batch_arguments),
    ("keys", "API keys of a deployment (create, list, revoke, rotate) and trusted signing keys", _security.keys_arguments),
    ("audit", "verify or show a deployment's hash-chained audit log", _security.audit_arguments),
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


