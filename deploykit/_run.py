"""``deploykit run``: execute a notebook headless with papermill, then deploy the packages it made.

The declaration is the code the notebook already has: a notebook declares a model for deployment by
packaging it (``deploykit.package(model, name=..., X_train=...)``, or ``deploykit.deploy``/``%deploy``,
which package too). After the run, the newest version of every package name the notebook made is
deployed under that name on the chosen target, with the usual health-gated replacement. The notebook
stays runnable by hand, needs no tags or metadata, and the target is the caller's choice, not the
notebook's.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _paths, _store
from ._runtime.errors import DeployKitError
from .exceptions import ConfigError


@dataclass
class RunResult:
    """What a run executed, the packages the notebook made, and where they now serve."""

    notebook: Path
    output: Path
    packages: list = field(default_factory=list)
    deployments: list = field(default_factory=list)

    def __repr__(self) -> str:
        served = ", ".join(f"{d.name} v{d.version} at {d.url}" for d in self.deployments) or "nothing deployed"
        return f"<RunResult {self.notebook.name} → {self.output} · {served}>"


def run_notebook(notebook: str | Path, *, parameters: dict | None = None, output: str | Path | None = None,
                 target: str = "local", deploy: bool = True, verbose: bool = True) -> RunResult:
    """Execute ``notebook`` with ``parameters`` injected, then deploy the packages it made on ``target``.

    The notebook runs in its own folder; the executed copy (outputs, and the traceback of a failing cell)
    is written to ``output``, by default under ``$DEPLOYKIT_HOME/runs/``.
    """
    notebook = Path(notebook)
    if notebook.suffix != ".ipynb" or not notebook.is_file():
        raise ConfigError(f"{str(notebook)!r} is not a notebook file (.ipynb) that exists")
    output = Path(output) if output else _default_output(notebook)
    before = _package_versions()
    _execute(notebook, output, parameters or {}, verbose)
    made = _newest_per_name(_package_versions() - before)
    if not made:
        raise ConfigError(f"{notebook.name} ran but made no package, so there is nothing to deploy; package the model "
                          "in it with deploykit.package(model, name=..., X_train=..., ...)")
    from ._package import Package

    result = RunResult(notebook, output, [Package.load(_store.path(n, v)) for n, v in made])
    if deploy:
        result.deployments = [_deploy(pkg, target, verbose) for pkg in result.packages]
    return result


def _default_output(notebook: Path) -> Path:
    folder = _paths.home() / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"{notebook.stem}-{stamp}.ipynb"


def _execute(notebook: Path, output: Path, parameters: dict, verbose: bool) -> None:
    try:
        import papermill
        from jupyter_client.kernelspec import NoSuchKernel
        from papermill.exceptions import PapermillExecutionError
    except ImportError:
        raise ConfigError("deploykit run needs papermill: pip install 'deploykit[cli]'") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if verbose else {}
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, progress_bar=False,
                                   cwd=str(notebook.resolve().parent), **streams)
    except NoSuchKernel as exc:
        raise ConfigError(f"{notebook.name} asks for the Jupyter kernel {exc.args[0]!r}, which is not installed here; "
                          "pip install ipykernel (for 'python3'), or change the notebook's kernel") from None
    except PapermillExecutionError as exc:
        raise DeployKitError(f"{notebook.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue.rstrip('.')}); "
                             f"the executed notebook, with the traceback, is at {output}") from None


def _package_versions() -> set[tuple[str, str]]:
    return _store.every_version()


def _newest_per_name(made: set[tuple[str, str]]) -> list[tuple[str, str]]:
    newest: dict[str, str] = {}
    for name, version in made:
        if int(version) > int(newest.get(name, 0)):
            newest[name] = version
    return sorted(newest.items())


def _deploy(pkg: Any, target: str, verbose: bool):
    """Deploy ``pkg`` under its name, unless the notebook already deployed it there (deployments outlive
    the kernel that made them)."""
    from ._deploy import deploy
    from ._deployment import deployments

    for running in deployments():
        if running.name == pkg.name and running.target == target and Path(running.package.path) == Path(pkg.path):
            return running
    return deploy(pkg, target=target, name=pkg.name, verbose=verbose)
