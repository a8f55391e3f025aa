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


def read_frame(path: str | Path):
    """A DataFrame from a CSV, Parquet or JSON file."""
    import pandas as pd

    path = _existing(path, DATA_SUFFIXES, "data")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ConfigError(f"reading {path} needs pyarrow: pip install 'deploykit[cli]' ({exc})") from None
    return pd.DataFrame(_json_rows(path))


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


def read_fields(path: str | Path) -> dict:
    """Model card fields from a JSON or TOML file."""
    path = _existing(path, FIELD_SUFFIXES, "card fields")
    if path.suffix.lower() == ".toml":
        import tomllib

        return tomllib.loads(path.read_text())
    fields = json.loads(path.read_text())
    if not isinstance(fields, dict):
        raise ConfigError(f"{path} must hold one object of card fields, e.g. {{\"intended_use\": \"...\"}}")
    return fields


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
