"""What each command of the shared grammar does: one core call per command, for both front ends.

``execute(args, names)`` takes arguments parsed by :func:`deploykit._grammar.build_parser` and a ``names``
object that turns the user's words into objects: files in the CLI (:class:`deploykit._cli.Files`),
notebook variables in ``%deploy`` (:class:`deploykit._magic.Variables`). It returns the core's result;
each front end shows it its own way (the CLI prints, the magic returns it for rich display).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any, Callable, Protocol

from ._grammar import ArgumentError


class Names(Protocol):
    def model(self, token: str, *, trust: bool) -> Any: ...
    def frame(self, token: str, schema: dict | None = None) -> Any: ...
    def labels(self, token: str) -> Any: ...
    def fields(self, token: str) -> dict: ...
    def schema(self, token: str) -> dict: ...
    def package(self, token: str, version: str | None) -> Any: ...


def execute(args: argparse.Namespace, names: Names) -> Any:
    return _COMMANDS[args.command](args, names)


def deploy_kwargs(args: argparse.Namespace, names: Names) -> dict:
    """Keyword arguments for :func:`deploykit.deploy` from parsed ``deploy`` arguments."""
    kwargs: dict[str, Any] = {"target": args.target, "name": args.name, "port": args.port, "host": args.host}
    if args.base_image:
        kwargs["base_image"] = args.base_image
    if args.replicas is not None:
        kwargs["replicas"] = args.replicas
    for flag, (x_key, y_key) in (("train", ("X_train", "y_train")), ("test", ("X_test", "y_test"))):
        values = getattr(args, flag) or []
        if len(values) > 2:
            raise ArgumentError(f"--{flag} takes X and optionally y, got {len(values)} names: {' '.join(values)}")
        if values:
            kwargs[x_key] = names.frame(values[0])
        if len(values) == 2:
            kwargs[y_key] = names.labels(values[1])
    if args.sensitive:
        kwargs["sensitive_features"] = args.sensitive
    if args.profile:
        kwargs["profile"] = args.profile
    if args.card:
        kwargs["card"] = names.fields(args.card)
    if args.schema:
        kwargs["schema"] = names.schema(args.schema)
    if "X_train" in kwargs or args.explain is False:
        kwargs["explain"] = args.explain
    kwargs["strategy"] = args.strategy
    kwargs["capture"] = args.capture
    if args.auth is not None:
        kwargs["auth"] = args.auth
    for key in ("image", "push", "context", "namespace"):  # target options: only when given
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    for key in ("sample", "traffic", "steps", "interval", "guardrails", "sticky"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    return kwargs


def parameters(pairs: list[list[str]] | None) -> dict:
    """``-p key value`` pairs; values read as Python literals where they are one (``5``, ``0.1``, ``True``)."""
    values = {}
    for key, text in pairs or []:
        try:
            values[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            values[key] = text
    return values


# -- the commands -------------------------------------------------------------------------------------
def _deploy(args, names):
    from ._deploy import deploy
    from ._package import Package

    if args.panel:
        raise ArgumentError("--panel opens a widget in a notebook: use `%deploy --panel MODEL --train X_train y_train`")
    model = names.model(args.model, trust=args.trust)
    if not isinstance(model, Package):
        missing = [flag for flag, given in (("--name NAME", args.name), ("--train X [y]", args.train)) if not given]
        if missing:
            raise ArgumentError(f"deploying a model (not a saved package) needs {' and '.join(missing)}")
    return deploy(model, **deploy_kwargs(args, names))


def _list(args, names):
    from ._deployment import deployments

    return deployments()


def _find(name: str):
    from ._deployment import find

    return find(name)


def _status(args, names):
    return _find(args.name)


def _logs(args, names):
    deployment = _find(args.name)
    return deployment.follow_logs(args.tail) if args.follow else deployment.logs(args.tail)


def _predict(args, names):
    deployment = _find(args.name)
    rows = names.frame(args.data, deployment.package.schema)  # a CSV's cells read as the model's column types
    return deployment.predict_proba(rows) if args.proba else deployment.predict(rows)


def _explain(args, names):
    deployment = _find(args.name)
    return deployment.explain(names.frame(args.data, deployment.package.schema))


def _card(args, names):
    from ._deployment import card_of

    if args.name == "approve" and args.approve_name:
        return _approve(args, names)
    if args.approve_name:
        raise ArgumentError(f"card takes one name, got {args.name!r} and {args.approve_name!r}; "
                            "to record a decision: card approve NAME --reviewer ... --role ...")
    card, address = card_of(args.name, saved=lambda name: names.package(name, args.version), version=args.version)
    if args.save:
        card.save(args.save)
    if args.open:
        _open_in_browser(address)
    return card


def _approve(args, names):
    """``card approve NAME``: the decision is recorded by the core, ``ModelCard.approve``."""
    from ._deployment import card_of

    if not args.reviewer or not args.role:
        raise ArgumentError("card approve needs --reviewer 'Name <email>' and --role ROLE")
    card, _ = card_of(args.approve_name, saved=lambda name: names.package(name, args.version), version=args.version)
    card.approve(reviewer=args.reviewer, role=args.role, decision=args.decision, notes=args.notes, key=args.key)
    return card


def _open_in_browser(address: str) -> None:
    import webbrowser

    if not webbrowser.open(address):
        print(f"no browser to open here; the card is at {address}")


def _rollback(args, names):
    from ._rollback import rollback

    return rollback(args.name, to=args.to)


def _promote(args, names):
    from ._experiments import promote

    return promote(args.name)


def _compare(args, names):
    return _find(args.name).compare()


def _monitor(args, names):
    return _find(args.name).monitor(args.window)


def _scale(args, names):
    return _find(args.name).scale(args.replicas)


def _stop(args, names):
    deployment = _find(args.name)
    deployment.stop()
    return deployment


def _build(args, names):
    return names.package(args.package, args.version).build_image(base_image=args.base_image, tag=args.tag)


def _export(args, names):
    return names.package(args.package, args.version).export(args.format, args.output)


def _base_image(args, names):
    from ._docker.base import build_base_image

    return build_base_image(args.tag, suite=args.suite, mirror=args.mirror)


def _run(args, names):
    from ._run import run_notebook

    result = run_notebook(args.notebook, parameters=parameters(args.parameter), output=args.output, target=args.target)
    for pkg in result.packages if args.cards else []:
        if pkg.card is not None:
            pkg.card.save(Path(args.cards) / pkg.name)
    if args.stop:
        for deployment in result.deployments:
            deployment.stop()
    return result


def _init_ci(args, names):
    from ._ci import write_workflow

    return write_workflow(args.notebook, output=args.output, force=args.force, target=args.target, keep=args.keep,
                          runs_on=args.runs_on, python=args.python, branch=args.branch,
                          parameters=parameters(args.parameter))


def _demo(args, names):
    from .demo import run

    run(keep=args.keep, target=args.target)


def _security():
    from ._security import commands

    return commands


def _manifests(args, names):
    from ._kubernetes.manifests import manifests

    options = {"namespace": args.namespace, "replicas": args.replicas, "ingress_host": args.ingress_host}
    return manifests(names.package(args.package, args.version), kind=args.kind, image=args.image, out=args.out,
                     **options)


def _batch(args, names):
    from ._batch import batch

    return batch(names.package(args.package, args.version), args.source, args.destination, engine=args.engine,
                 scheduler=args.scheduler, explain=args.explain, chunk_rows=args.chunk_rows, workers=args.workers)


_COMMANDS: dict[str, Callable[[argparse.Namespace, Names], Any]] = {
    "deploy": _deploy,
    "list": _list,
    "status": _status,
    "logs": _logs,
    "predict": _predict,
    "explain": _explain,
    "card": _card,
    "rollback": _rollback,
    "promote": _promote,
    "compare": _compare,
    "monitor": _monitor,
    "scale": _scale,
    "stop": _stop,
    "build": _build,
    "export": _export,
    "base-image": _base_image,
    "run": _run,
    "init-ci": _init_ci,
    "demo": _demo,
    "manifests": _manifests,
    "batch": _batch,
    "keys": lambda args, names: _security().run_keys(args, names),
    "audit": lambda args, names: _security().run_audit(args, names),
}
COMMANDS = tuple(_COMMANDS)
