"""Where a model came from: its steps and hyperparameters, the git commit, and the notebook file's hash."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

_SCALARS = (str, int, float, bool, type(None))


def pipeline_steps(model: Any, prefix: str = "") -> list[dict]:
    """Every step of a model, depth first, each with its own hyperparameters (``get_params(deep=False)``).

    Steps of Pipelines, ColumnTransformers and FeatureUnions are listed as their own entries, named by
    their path (``pre/num/impute``), so each estimator's parameters appear exactly once.
    """
    name = prefix or type(model).__name__
    entry = {"step": name, "class": f"{type(model).__module__}.{type(model).__qualname__}", "params": {}}
    children = _children(model)
    child_names = {child_name for child_name, _ in children}
    if hasattr(model, "get_params"):
        for key, value in sorted(model.get_params(deep=False).items()):
            if key in ("steps", "transformers", "transformer_list") or key in child_names:
                continue
            entry["params"][key] = _jsonable(value)
    steps = [entry]
    for child_name, child in children:
        if child in (None, "drop", "passthrough"):
            continue
        steps.extend(pipeline_steps(child, f"{prefix}/{child_name}" if prefix else child_name))
    return steps


def _children(model: Any) -> list[tuple[str, Any]]:
    fitted = getattr(model, "transformers_", None)  # a fitted ColumnTransformer's own fitted copies
    if fitted is not None:
        return [(n, t) for n, t, _ in fitted if n != "remainder" or t not in ("drop", "passthrough")]
    for attribute in ("steps", "transformer_list"):
        if isinstance(getattr(model, attribute, None), list):
            return [(n, s) for n, s in getattr(model, attribute)]
    return []


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    if isinstance(value, dict) and all(isinstance(v, _SCALARS) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def git_commit(start: Path | None = None) -> dict | None:
    """The commit checked out where the notebook runs, and whether the tree has uncommitted changes."""
    cwd = str(start or Path.cwd())
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def source_file() -> dict | None:
    """The notebook (or script) the model was packaged from, by name and sha256, when it can be found.

    Jupyter servers tell kernels their notebook in ``JPY_SESSION_NAME``; VS Code sets
    ``__vsc_ipynb_file__``; a script is ``__main__.__file__``. Only the file name is recorded, not its
    full path, which often names a person's home directory.
    """
    for candidate in _candidates():
        path = Path(candidate)
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            kind = "notebook" if path.suffix == ".ipynb" else "script"
            return {"kind": kind, "name": path.name, "sha256": digest}
    return None


def _candidates() -> list[str]:
    found = [os.environ.get("JPY_SESSION_NAME", "")]
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        found += [str(shell.user_ns.get("__vsc_ipynb_file__", "")), str(shell.user_ns.get("__session__", ""))]
    else:
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        if main and not _installed(Path(main)):  # `python -m pytest` is not where the model came from
            found.append(str(main))
    return [c for c in found if c and c.endswith((".ipynb", ".py"))]


def _installed(path: Path) -> bool:
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix)}
    return any(parent in prefixes for parent in path.resolve().parents)


_SEED_NAMES = ("random_state", "seed", "random_seed")


def seeds(model: Any) -> list[dict]:
    """Every seed parameter anywhere in the model (``random_state`` of each step, nested ones included).

    A seed of None means the step draws a fresh one at every fit: refitting gives another model.
    """
    if not hasattr(model, "get_params"):
        return []
    found = []
    for key, value in sorted(model.get_params(deep=True).items()):
        if key.rsplit("__", 1)[-1] in _SEED_NAMES:
            fixed = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            found.append({"parameter": key.replace("__", "."), "value": _jsonable(value), "fixed": fixed})
    return found


def environment(manifest: dict, model_dir: Path) -> dict:
    """The requirements and the full lock the package pins, and the lock file's sha256."""
    lock = list(manifest.get("lock", []))
    path = Path(model_dir) / "requirements.lock"
    data = path.read_bytes() if path.is_file() else ("\n".join(lock) + "\n").encode()
    return {"requirements": list(manifest.get("requirements", [])), "lock": lock, "lock_file": "requirements.lock",
            "lock_sha256": hashlib.sha256(data).hexdigest()}


def author(user: dict) -> dict:
    """Who packaged the model: the ``author`` card field, else git's user.name and user.email, else the login."""
    import getpass

    login = None
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        pass
    if user.get("author"):
        email = re.search(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", user["author"])
        name = re.sub(r"<[^>]*>", " ", user["author"]).strip(" ,;") if email else user["author"]
        return {"name": " ".join(name.split()) or None, "email": email.group(0) if email else None, "login": login,
                "source": "card field 'author'"}
    name, email = _git_config("user.name"), _git_config("user.email")
    if name or email:
        return {"name": name, "email": email, "login": login, "source": "git config"}
    return {"name": login, "email": None, "login": login, "source": "login name"}


def _git_config(key: str) -> str | None:
    try:
        out = subprocess.run(["git", "config", key], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
