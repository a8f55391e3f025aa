"""The ``deploykit`` command line: parses with the shared grammar (:mod:`deploykit._grammar`), runs the
command with :mod:`deploykit._commands`, and prints the result. The CLI's words are files
(:class:`Files`): models, data, card fields, saved packages.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._commands import execute
from ._grammar import ArgumentError, HelpShown, build_parser
from ._security import commands as _security

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


def _show_list(args, deployments) -> None:
    for dep in deployments:
        print(f"{dep.name}\tv{dep.version}\t{dep.target}\t{dep.url}")


def _show_status(args, dep) -> int:
    status = dep.status()
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
    if args.name == "approve" and args.approve_name:
        from ._card._approvals import signer

        decision = card.approvals[-1]
        print(f"recorded: {decision['decision']} by {decision['reviewer']} ({decision['role']}) on {card.name} "
              f"v{card.version}, card sha256 {decision['card_sha256'][:12]}…, {signer(decision)}; review status: "
              f"{card.review['status']}")
        return
    if args.format == "markdown":
        print(card.to_markdown(images=None))
    elif args.format == "html":
        print(card.to_html())
    elif args.format == "json":
        print(card.to_json(), end="")
    else:
        print(repr(card))
        print(f"  review: {card.review['status']}")
        for finding in card.findings:
            print(f"  {finding.severity}: {finding.field}: {finding.message}")
    if args.save:
        print(f"saved to {args.save}", file=sys.stderr)


def _show_report(args, report) -> None:
    print(report.to_json() if args.json else str(report))


def _show_exported(args, folder) -> None:
    from ._edge import bundle_size

    size = bundle_size(folder)
    print(f"wrote {folder}/ ({size['folder_bytes'] / 1024:.0f} KiB) and {folder}.zip ({size['zip_bytes'] / 1024:.0f} KiB)")


def _show_scaled(args, dep) -> None:
    print(f"{dep.name} v{dep.version}: {args.replicas} replicas at {dep.url}")


def _show_stopped(args, dep) -> None:
    print(f"stopped {dep.name}")


def _show_run(args, result) -> None:
    print(f"executed {result.notebook} → {result.output}")
    for dep in result.deployments:
        print(f"{dep.name}\tv{dep.version}\t{dep.target}\t{dep.url}\t{'stopped after its checks' if args.stop else 'serving'}")


def _show_path(args, path) -> None:
    print(f"wrote {path}")


_SHOW = {
    "deploy": _show_deployed, "rollback": _show_deployed, "promote": _show_deployed, "compare": _show_report,
    "monitor": _show_report,
    "list": _show_list, "status": _show_status,
    "logs": _show_logs, "predict": _show_predictions, "explain": _show_explanation, "card": _show_card,
    "scale": _show_scaled, "stop": _show_stopped, "run": _show_run, "init-ci": _show_path, "export": _show_exported,
    "build": lambda args, image: print(image.tag), "base-image": lambda args, tag: print(tag),
    "manifests": lambda args, paths: print("\n".join(f"wrote {p}" for p in paths)), "batch": lambda args, r: print(repr(r)),
    "keys": lambda args, result: _security.show_keys(args, result),
    "audit": lambda args, result: _security.show_audit(args, result),
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
