"""What the CLI's names point at: data tables, label columns, card fields and model files.

Data: CSV, Parquet, or JSON (a list of row objects, one row object, or the HTTP body
``{"instances": [...]}``). Models: skops files load without ceremony when every type in them is one skops
trusts by default; pickle and joblib files run code while loading, so they need ``trust=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .exceptions import ConfigError, SchemaError

DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".json")
MODEL_SUFFIXES = (".skops", ".joblib", ".pkl", ".pickle")
FIELD_SUFFIXES = (".json", ".toml")


def _existing(path: str | Path, kinds: tuple[str, ...], what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in kinds:
        raise ConfigError(f"{path}: unknown {what} file type {path.suffix or '(no extension)'!r}; use {', '.join(kinds)}")
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist (relative to {Path.cwd()})")
    return path


def read_frame(path: str | Path, schema: dict | None = None):
    """A DataFrame from a CSV, Parquet or JSON file.

    With a package's ``schema``, a CSV's cells are read as their column's type (an integer column's
    cells as integers, ...), and a cell that is not one is a :class:`SchemaError` naming its row.
    """
    import pandas as pd

    path = _existing(path, DATA_SUFFIXES, "data")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return typed_csv(path, schema) if schema is not None else pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ConfigError(f"reading {path} needs pyarrow: pip install 'deploykit[cli]' ({exc})") from None
    return pd.DataFrame(_json_rows(path))


def typed_csv(path: Path, schema: dict):
    """A CSV read cell by cell as the package's column types; columns the schema lacks stay text."""
    import pandas as pd

    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    kinds = {c["name"]: c for c in schema["columns"]}
    problems, data = [], {}
    for name in raw.columns:
        column = kinds.get(name)
        values = raw[name].tolist()
        if column is None:
            data[name] = values
            continue
        data[name] = []
        for row, cell in enumerate(values):
            try:
                data[name].append(_cell(cell, column))
            except ValueError as exc:
                problems.append(f"row {row} (line {row + 2}), column {name!r}: {cell[:40]!r} {exc}")
                data[name].append(None)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SchemaError(f"{path}: {problems[0]}{more}; fix the cell or leave it empty for a missing value")
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()}, columns=raw.columns)


def _cell(cell: str, column: dict):
    """One CSV cell as its column's JSON value; ValueError says what it should have been."""
    text, kind = cell.strip(), column["kind"]
    if kind == "string" or (kind == "category" and all(isinstance(c, str) for c in column.get("categories") or [])):
        return None if cell == "" and column["nullable"] else cell
    if text == "" or text.lower() in ("nan", "null", "none", "na"):
        return None
    if kind == "boolean":
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError("is not true or false")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"is not {'an integer' if kind == 'integer' else 'a number'}") from None
    if kind == "integer" or (kind == "category" and number.is_integer()):
        if not number.is_integer():
            raise ValueError("is not an integer")
        return int(text) if text.lstrip("+-").isdigit() else int(number)
    return number


def _json_rows(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise SchemaError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("instances", [data])
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise SchemaError(f"{path} must hold row objects: [{{\"column\": value, ...}}, ...] or {{\"instances\": [...]}}")
    return data


def read_labels(path: str | Path):
    """A Series from a data file holding exactly one column (the labels)."""
    frame = read_frame(path)
    if frame.shape[1] != 1:
        raise SchemaError(f"{path} has {frame.shape[1]} columns {list(frame.columns)[:5]}; a label file holds exactly one")
    return frame.iloc[:, 0]


def read_fields(path: str | Path, what: str = "card fields", example: str = '{"intended_use": "..."}') -> dict:
    """Model card fields (or another table of settings) from a JSON or TOML file."""
    path = _existing(path, FIELD_SUFFIXES, what)
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(path.read_text())
        fields = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(fields, dict):
        raise ConfigError(f"{path} must hold one object of {what}, e.g. {example}")
    return fields


def read_schema(token: str) -> dict:
    """Column kinds for ``--schema``: a .json/.toml file, or inline ``review=text,plan=category``."""
    if Path(token).suffix.lower() in FIELD_SUFFIXES:
        return read_fields(token, "column kinds", '{"review": "text", "plan": "category"}')
    return parse_kinds(token)


def parse_kinds(text: str) -> dict:
    """``review=text,plan=category`` as a dict."""
    kinds = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, kind = part.partition("=")
        if not sep or not name.strip() or not kind.strip():
            raise ConfigError(f"--schema {text!r}: write COLUMN=KIND pairs separated by commas, e.g. review=text,plan=category "
                              "(or name a .json/.toml file)")
        kinds[name.strip()] = kind.strip()
    if not kinds:
        raise ConfigError("--schema is empty: write e.g. review=text,plan=category")
    return kinds


def is_model_file(token: str) -> bool:
    return Path(token).suffix.lower() in MODEL_SUFFIXES


def load_model(path: str | Path, *, trust: bool = False) -> Any:
    """A fitted estimator from a skops, joblib or pickle file.

    Raises :class:`ConfigError` before loading anything that could run code, unless ``trust``.
    """
    path = _existing(path, MODEL_SUFFIXES, "model")
    if path.suffix.lower() == ".skops":
        return _load_skops(path, trust)
    if not trust:
        raise ConfigError(
            f"{path} is a {path.suffix[1:]} file: loading it runs whatever code it holds. Pass --trust if you made "
            "it yourself, or save the model with skops (skops.io.dump(model, 'model.skops')), which loads without it")
    if path.suffix.lower() == ".joblib":
        import joblib

        return joblib.load(path)
    import pickle

    with open(path, "rb") as file:
        return pickle.load(file)


def _load_skops(path: Path, trust: bool) -> Any:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    if untrusted and not trust:
        raise ConfigError(
            f"{path} holds types skops does not trust by default: {', '.join(untrusted[:5])}"
            f"{' …' if len(untrusted) > 5 else ''}; check them and pass --trust to load it")
    return sio.load(path, trusted=untrusted or None)
