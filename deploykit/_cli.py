"""The ``deploykit`` command line, and the one argument grammar it shares with ``%deploy``.

Each subcommand parses its arguments and calls the core API; nothing here decides how to deploy.
In the CLI, MODEL names a saved package (name or folder); in ``%deploy`` it names a notebook variable.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

COMMANDS = ("deploy", "list", "stop", "build", "base-image", "demo")


class ArgumentError(Exception):
    """Raised instead of exiting when arguments do not parse (the magic must not exit the kernel)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise ArgumentError(f"{self.prog}: {message}")


def build_parser(prog: str = "deploykit") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Turn a fitted model into a live, explained BentoML service.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    deploy = sub.add_parser(
        "deploy",
        help="package and serve a model",
        description="Package and serve a model.",
        epilog="example: %deploy model --name churn --train X_train y_train --test X_test y_test",
    )
    deploy.add_argument("model", help="the model (a notebook variable in %%deploy; a package name or folder in the CLI)")
    deploy.add_argument("--name", help="service name: lowercase letters, digits, - and _")
    deploy.add_argument("--train", nargs="+", metavar=("X", "Y"), help="training data: X [y]")
    deploy.add_argument("--test", nargs="+", metavar=("X", "Y"), help="held-out data: X [y]")
    deploy.add_argument("--target", default="local", choices=["local", "docker"], help="where to run it (default: local)")
    deploy.add_argument("--port", type=int, help="port to serve on (default: a free one)")
    deploy.add_argument("--base-image", help="docker: base image (default: $DEPLOYKIT_BASE_IMAGE, config, python:X.Y-slim)")
    deploy.add_argument("--no-explain", dest="explain", action="store_false", help="do not serve /explain")
    deploy.add_argument("--panel", action="store_true", help="%%deploy only: open the deploy panel widget with this model and data")
    deploy.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    sub.add_parser("list", help="list running deployments").add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    stop = sub.add_parser("stop", help="stop a deployment")
    stop.add_argument("name")
    stop.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    build = sub.add_parser("build", help="build a package's Docker image", epilog="example: deploykit build churn")
    build.add_argument("package", help="package name (newest version) or folder")
    build.add_argument("--version", help="package version (default: the newest)")
    build.add_argument("--base-image", help="base image (default: $DEPLOYKIT_BASE_IMAGE, config, python:X.Y-slim)")
    build.add_argument("--tag", help="image tag (default: deploykit/NAME:VERSION)")
    build.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    base = sub.add_parser("base-image", help="build a Python base image from Debian packages (no registry needed)",
                          epilog="example: deploykit base-image --tag local/python:3.11-bookworm")
    base.add_argument("--tag", help="image tag (default: local/python:X.Y-SUITE)")
    base.add_argument("--suite", help="Debian suite (default: the one whose Python matches this one)")
    base.add_argument("--mirror", help="Debian mirror (default: the one apt uses here)")
    base.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    demo = sub.add_parser("demo", help="train a churn model, deploy it, show a prediction and its explanation")
    demo.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C")
    demo.add_argument("--target", default="auto", choices=["auto", "local", "docker"],
                      help="auto (default): docker when an engine and a base image are usable, else local")
    demo.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def deploy_kwargs(args: argparse.Namespace, resolve: Callable[[str], Any]) -> dict:
    """Keyword arguments for :func:`deploykit.deploy` from parsed ``deploy`` arguments."""
    kwargs: dict[str, Any] = {"target": args.target, "name": args.name, "port": args.port}
    if args.base_image:
        kwargs["base_image"] = args.base_image
    for flag, names in (("train", ("X_train", "y_train")), ("test", ("X_test", "y_test"))):
        values = getattr(args, flag)
        if values:
            if len(values) > 2:
                raise ArgumentError(f"--{flag} takes X and optionally y, got {len(values)} names")
            for key, value in zip(names, values):
                kwargs[key] = resolve(value)
    if "X_train" in kwargs or args.explain is False:
        kwargs["explain"] = args.explain
    return kwargs


def main(argv: list[str] | None = None) -> int:
    from .exceptions import DeployKitError

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except ArgumentError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        _run(args)
    except (DeployKitError, ArgumentError) as exc:
        if args.debug:
            raise
        print(f"\033[31merror:\033[0m {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _run(args: argparse.Namespace) -> None:
    import deploykit

    if args.command == "list":
        for dep in deploykit.deployments():
            print(f"{dep.name}\tv{dep.version}\t{dep.target}\t{dep.url}")
    elif args.command == "stop":
        _stop(args.name)
    elif args.command == "deploy":
        pkg = deploykit.Package.load(args.model)
        if args.train or args.test:
            raise ArgumentError("the CLI deploys saved packages; --train/--test apply when packaging in a notebook")
        options = {"base_image": args.base_image} if args.base_image else {}
        dep = deploykit.deploy(pkg, target=args.target, name=args.name, port=args.port, **options)
        print(dep.url)
        if dep.target == "local":
            _serve_until_interrupted(dep)
    elif args.command == "build":
        image = deploykit.Package.load(args.package, version=args.version).build_image(base_image=args.base_image, tag=args.tag)
        print(image.tag)
    elif args.command == "base-image":
        from ._docker.base import build_base_image

        print(build_base_image(args.tag, suite=args.suite, mirror=args.mirror))
    elif args.command == "demo":
        from .demo import run

        run(keep=args.keep, target=args.target)


def _stop(name: str) -> None:
    import deploykit
    from .exceptions import ConfigError

    for dep in deploykit.deployments():
        if dep.name == name:
            dep.stop()
            print(f"stopped {name}")
            return
    raise ConfigError(f"no running deployment named {name!r}; `deploykit list` shows what is running")


def _serve_until_interrupted(dep) -> None:
    import time

    print("serving; Ctrl-C stops it", file=sys.stderr)
    try:
        while dep.handle.exited() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        dep.stop()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
