"""``%deploy``: the notebook front end. Parses with the CLI's parser, calls the core, shows the result."""

from __future__ import annotations

import shlex

from ._cli import COMMANDS, ArgumentError, build_parser, deploy_kwargs


def _resolve(shell, name: str):
    if name not in shell.user_ns:
        raise ArgumentError(f"no variable named {name!r} in the notebook; define it first or check the spelling")
    return shell.user_ns[name]


def deploy_magic(shell, line: str):
    """Deploy a model from the notebook.

    Usage::

        %deploy MODEL --name NAME --train X_train [y_train] [--test X_test [y_test]] [--target local]
                      [--port N] [--no-explain] [--debug]
        %deploy list
        %deploy stop NAME
        %deploy --panel MODEL --train X_train [y_train] [--test X_test [y_test]] [--name NAME]

    ``--panel`` opens the deploy panel widget (a form, live progress, a try-it form) instead of deploying.
    MODEL, X_train and the rest are names of notebook variables. Errors show as one line; add
    ``--debug`` for the full traceback.

    Example::

        %deploy clf --name churn --train X_train y_train --test X_test y_test
    """
    import deploykit
    from IPython.core.error import UsageError

    tokens = shlex.split(line)
    if tokens and tokens[0] not in COMMANDS and (not tokens[0].startswith("-") or tokens[0] == "--panel"):
        tokens = ["deploy", *tokens]
    debug = "--debug" in tokens
    try:
        args = build_parser(prog="%deploy").parse_args(tokens)
        if args.command == "list":
            return deploykit.deployments()
        if args.command == "stop":
            from ._cli import _stop

            _stop(args.name)
            return None
        if args.command == "demo":
            raise ArgumentError("the demo runs from a terminal: `deploykit demo`")
        kwargs = deploy_kwargs(args, lambda name: _resolve(shell, name))
        if args.panel:
            return _panel(_resolve(shell, args.model), args, kwargs)
        return deploykit.deploy(_resolve(shell, args.model), **kwargs)
    except (deploykit.DeployKitError, ArgumentError) as exc:
        if debug:
            raise
        raise UsageError(f"{str(exc).splitlines()[0]}  (add --debug for details)") from None


def _panel(model, args, kwargs: dict):
    """``%deploy --panel``: the same data as a deploy, shown as a form instead of deployed at once."""
    import deploykit

    if "X_train" not in kwargs:
        raise ArgumentError("--panel needs the training data: %deploy --panel MODEL --train X_train y_train")
    data = {key: kwargs.get(key) for key in ("y_train", "X_test", "y_test")}
    return deploykit.DeployPanel(model, kwargs["X_train"], **data, name=args.name, target=args.target)


def register(ipython) -> None:
    def deploy(line: str):
        return deploy_magic(ipython, line)

    deploy.__doc__ = deploy_magic.__doc__
    ipython.register_magic_function(deploy, magic_kind="line", magic_name="deploy")
