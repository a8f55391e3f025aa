"""``deploykit init-ci``: a GitHub Actions workflow that runs a notebook with ``deploykit run``."""

from __future__ import annotations

import platform
import shlex
from pathlib import Path

from .exceptions import ConfigError

WORKFLOW = Path(".github/workflows/deploykit.yml")
TEMPLATE = "ci/github-actions.yml.j2"
RUN_FOLDER = "deploykit-run"


def render_workflow(notebook: str, *, target: str = "local", keep: bool = False, runs_on: str = "ubuntu-latest",
                    python: str | None = None, branch: str = "main", parameters: dict | None = None,
                    install: str = "deploykit[cli]") -> str:
    """The workflow's YAML text.

    Without ``keep`` it checks: each deployment must start and pass its checks, then is stopped (also on
    pull requests). With ``keep`` (docker only) deployments stay up after the job, on pushes only.
    """
    if keep and target != "docker":
        raise ConfigError("keep=True needs target='docker': a local service ends with the CI job that started it")
    notebook = Path(notebook).as_posix()
    command = ["deploykit", "run", notebook, "--output", f"{RUN_FOLDER}/{Path(notebook).stem}.ipynb",
               "--cards", f"{RUN_FOLDER}/cards", "--target", target]
    command += [] if keep else ["--stop"]
    for key, value in (parameters or {}).items():
        command += ["-p", str(key), str(value)]
    from ._templates import render

    return render(TEMPLATE, notebook=notebook, notebook_arg=shlex.quote(notebook), stop=not keep, branch=branch,
                  runs_on=runs_on, python=python or ".".join(platform.python_version_tuple()[:2]),
                  install=shlex.quote(install), command=shlex.join(command))


def write_workflow(notebook: str, *, output: str | Path = WORKFLOW, force: bool = False, **options) -> Path:
    """Write :func:`render_workflow`'s YAML to ``output`` (``.github/workflows/deploykit.yml``)."""
    output, path = Path(output), Path(notebook)
    if not path.is_file():
        raise ConfigError(f"no notebook {notebook!r} (relative to {Path.cwd()}); name the one CI should run")
    if path.is_absolute():  # CI runs from the repository's root, which should be where this runs
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            raise ConfigError(f"{notebook} is outside {Path.cwd()}; run init-ci from the repository's root") from None
    text = render_workflow(str(path), **options)
    if output.exists() and not force:
        raise ConfigError(f"{output} exists; pass --force to write over it")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output
