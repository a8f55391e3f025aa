"""``%deploy``: the notebook front end. Parses with the shared grammar, calls the core, shows the result."""

from __future__ import annotations

import shlex

from ._commands import COMMANDS, deploy_kwargs, execute
from ._grammar import ArgumentError, HelpShown, build_parser, grammar_help


def _resolve(shell, name: str):
    if name not in shell.user_ns:
        raise ArgumentError(f"no variable named {name!r} in the notebook; define it first or check the spelling")
    return shell.user_ns[name]


class Variables:
    """Turns %deploy's words into objects: models, data and card fields are notebook variables."""

    def __init__(self, shell) -> None:
        self.shell = shell

    def model(self, token: str, *, trust: bool):
        return _resolve(self.shell, token)

    def frame(self, token: str, schema: dict | None = None):
        return _resolve(self.shell, token)  # a variable carries its own dtypes

    def labels(self, token: str):
        return _resolve(self.shell, token)

    fields = labels

    def schema(self, token: str) -> dict:
        """``--schema``: a dict variable, or inline ``review=text,plan=category``."""
        from ._files import parse_kinds

        return _resolve(self.shell, token) if token.isidentifier() else parse_kinds(token)

    def package(self, token: str, version: str | None):
        from ._package import Package

        value = self.shell.user_ns.get(token)
        if isinstance(value, Package) and version is None:
            return value
        return Package.load(token, version=version)


def deploy_magic(shell, line: str):
    """Deploy a model from the notebook.

    Usage::

        %deploy MODEL --name NAME --train X_train [y_train] [--test X_test [y_test]] [--target local]
                      [--port N] [--no-explain] [--debug]
        %deploy list
        %deploy status NAME
        %deploy logs NAME [--tail N] [--follow]
        %deploy predict NAME DATA [--proba]
        %deploy explain NAME DATA
        %deploy card NAME [--open] [--save DIR]
        %deploy card approve NAME --reviewer 'NAME <EMAIL>' --role ROLE [--decision approved|rejected|conditions] [--notes TEXT]
        %deploy rollback NAME [--to VERSION]
        %deploy NEW_PKG --name NAME --strategy shadow|canary|ab [--traffic F] [--steps F ...] [--sticky FIELD]
        %deploy promote NAME
        %deploy compare NAME
        %deploy monitor NAME [--window 600|1h]
        %deploy scale NAME N
        %deploy stop NAME
        %deploy build PACKAGE [--version V] [--tag TAG]
        %deploy run NOTEBOOK.ipynb [-p KEY VALUE ...] [--target local|docker] [--stop]
        %deploy manifests PACKAGE --kind kubernetes|kserve --image REGISTRY/IMAGE:TAG [-o DIR]
        %deploy batch PACKAGE IN OUT [--engine local|dask] [--scheduler ADDRESS] [--explain]
        %deploy keys create|list|revoke|rotate|trust|untrust|trusted|public ...
        %deploy audit verify|show NAME
        %deploy --panel MODEL --train X_train [y_train] [--test X_test [y_test]] [--name NAME]

    ``--panel`` opens the deploy panel widget (a form, live progress, a try-it form) instead of deploying.
    MODEL, X_train, DATA and the rest are names of notebook variables. Errors show as one line; add
    ``--debug`` for the full traceback. The grammar is the ``deploykit`` command's; every command and
    option follows, with examples.

    Example::

        %deploy clf --name churn --train X_train y_train --test X_test y_test
    """
    from IPython.core.error import UsageError

    from .exceptions import DeployKitError

    tokens = shlex.split(line)
    if tokens and tokens[0] not in COMMANDS and (not tokens[0].startswith("-") or tokens[0] == "--panel"):
        tokens = ["deploy", *tokens]
    debug = "--debug" in tokens
    try:
        args = build_parser(prog="%deploy").parse_args(tokens)
        if args.command == "demo":
            raise ArgumentError("the demo runs from a terminal: `deploykit demo`")
        names = Variables(shell)
        if args.command == "deploy" and args.panel:
            return _panel(_resolve(shell, args.model), args, deploy_kwargs(args, names))
        return _shown(execute(args, names))
    except HelpShown:
        return None
    except (DeployKitError, ArgumentError) as exc:
        if debug:
            raise
        raise UsageError(f"{str(exc).splitlines()[0]}  (add --debug for details)") from None


def _panel(model, args, kwargs: dict):
    """``%deploy --panel``: the same data as a deploy, shown as a form instead of deployed at once."""
    from ._panel import DeployPanel

    if "X_train" not in kwargs:
        raise ArgumentError("--panel needs the training data: %deploy --panel MODEL --train X_train y_train")
    data = {key: kwargs.get(key) for key in ("y_train", "X_test", "y_test")}
    return DeployPanel(model, kwargs["X_train"], **data, name=args.name, target=args.target)


def _shown(result):
    """Text is printed (a followed log line by line, until the kernel is interrupted); objects display themselves."""
    if isinstance(result, str):
        print(result.rstrip("\n"))
        return None
    if hasattr(result, "__next__"):
        try:
            for line in result:
                print(line, flush=True)
        except KeyboardInterrupt:
            pass
        return None
    return result


def register(ipython) -> None:
    def deploy(line: str):
        return deploy_magic(ipython, line)

    deploy.__doc__ = f"{deploy_magic.__doc__}\n{grammar_help('%deploy')}"
    ipython.register_magic_function(deploy, magic_kind="line", magic_name="deploy")
