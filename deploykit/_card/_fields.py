"""The fields of a model card only the data scientist can fill: what they mean, and how they are read.

They come from ``deploykit.package(..., card={...})``, over defaults in the ``[card]`` table of
``$DEPLOYKIT_HOME/config.toml`` (handy for owners, contact and license, which rarely change)::

    [card]
    owners = ["Retention analytics <retention-ml@example.com>"]
    license = "proprietary"
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path

from ..exceptions import ConfigError

TEXT, LIST, OWNERS, RISKS, VALUE, NUMBER = "text", "list", "owners", "risks", "value", "number"

#: key -> (kind, where it goes in the card, what it means)
USER_FIELDS: dict[str, tuple[str, str, str]] = {
    "overview": (TEXT, "model_details.overview", "one sentence: what the model predicts, for whom"),
    "description": (TEXT, "model_details.description", "a longer description of the model and how it was made"),
    "owners": (OWNERS, "model_details.owners", "people or teams answerable for the model: names, or {'name', 'contact'}"),
    "contact": (TEXT, "model_details.contact", "where questions and complaints about the model go"),
    "license": (TEXT, "model_details.license", "an SPDX identifier, or 'proprietary'"),
    "references": (LIST, "model_details.references", "links to design documents, tickets, papers"),
    "intended_use": (LIST, "intended_use.primary_uses", "the decisions or tasks the model is for"),
    "users": (LIST, "intended_use.users", "who uses the model's outputs"),
    "out_of_scope": (LIST, "intended_use.out_of_scope", "uses the model must not be put to"),
    "decision_role": (TEXT, "intended_use.decision_role", "'advisory' (a person decides) or 'automated'"),
    "human_oversight": (TEXT, "intended_use.human_oversight", "who reviews outputs, when, and how they override them"),
    "contest": (TEXT, "intended_use.contest", "how a person affected by a decision contests it"),
    "provenance": (TEXT, "data.provenance", "where the training data came from and how it was selected and labelled"),
    "time_range": (TEXT, "data.time_range", "the period the data covers"),
    "deidentification": (TEXT, "data.deidentification", "whether the data holds personal/health information and how it was de-identified"),
    "limitations": (LIST, "risks.limitations", "known conditions where the model performs poorly or must not be trusted"),
    "risks": (RISKS, "risks.risks", "foreseeable harms, each optionally with its mitigation: text or {'name', 'mitigation'}"),
    "tradeoffs": (LIST, "risks.tradeoffs", "accuracy/fairness/latency tradeoffs that were chosen"),
    "monitoring": (TEXT, "deployment.monitoring", "what is watched in production (drift, performance, complaints) and by whom"),
    "logging": (TEXT, "deployment.logging", "what requests and decisions are logged, where, and for how long"),
    "access_control": (TEXT, "deployment.access_control", "who may call the service and how callers are authenticated"),
    "validated_by": (TEXT, "review.validated_by", "who independently reviewed the model, and when"),
    "author": (TEXT, "review.author.name", "who developed the model (default: git user.name <user.email>, else the "
               "login name); the author may not approve it"),
    "positive_class": (VALUE, "io.decision_threshold.positive_class", "the class the model flags (e.g. 'default'); "
                       "precision, recall, ROC AUC and group rates are about it (default: the second class)"),
    "decision_threshold": (NUMBER, "io.decision_threshold.threshold", "the cut-off on P(positive class) at which a "
                           "row is flagged (default 0.5, the model's own predict)"),
    "favourable_class": (VALUE, "fairness.favourable_class", "the outcome people want (e.g. 'repaid'), for the "
                         "adverse impact ratio (default: the class that is not the positive class)"),
}

DECISION_ROLES = ("advisory", "automated")


def config_path() -> Path:
    return Path(os.environ.get("DEPLOYKIT_HOME") or Path.home() / ".deploykit") / "config.toml"


def config_defaults() -> dict:
    """The ``[card]`` table of ``$DEPLOYKIT_HOME/config.toml``, or nothing."""
    path = config_path()
    if not path.exists():
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("card", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove its [card] table") from None
    return dict(table)


def read_user_fields(card: dict | None) -> dict:
    """Check the user's ``card={...}`` (over config defaults) and return it normalised by key."""
    if card is not None and not isinstance(card, dict):
        raise ConfigError(f"card must be a dict of card fields, got {type(card).__name__}; e.g. card={{'intended_use': '...'}}")
    merged = {**config_defaults(), **(card or {})}
    unknown = [key for key in merged if key not in USER_FIELDS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, USER_FIELDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"card field {key!r} is not known; {hint}known fields: {', '.join(USER_FIELDS)}")
    return {key: _normalise(key, value) for key, value in merged.items() if value not in (None, "", [])}


def _normalise(key: str, value):
    kind = USER_FIELDS[key][0]
    if kind == VALUE:
        if not isinstance(value, (str, int, bool)):
            raise ConfigError(f"card field {key!r} must be a class label (text or a number), got {value!r}")
        return value
    if kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ConfigError(f"card field {key!r} must be a probability strictly between 0 and 1, got {value!r}")
        return float(value)
    if kind == TEXT:
        if not isinstance(value, str):
            raise ConfigError(f"card field {key!r} must be text, got {type(value).__name__}: {value!r}")
        if key == "decision_role" and value not in DECISION_ROLES:
            raise ConfigError(f"card field 'decision_role' is {value!r}; use one of {', '.join(DECISION_ROLES)}")
        return value.strip()
    items = [value] if isinstance(value, (str, dict)) else list(value)
    if kind == LIST:
        return [_text(key, item) for item in items]
    if kind == OWNERS:
        return [_pair(key, item, ("name", "contact")) for item in items]
    return [_pair(key, item, ("name", "mitigation")) for item in items]


def _text(key: str, item) -> str:
    if not isinstance(item, str):
        raise ConfigError(f"card field {key!r} takes text or a list of texts, got {item!r}")
    return item.strip()


def _pair(key: str, item, names: tuple[str, str]) -> dict:
    if isinstance(item, str):
        return {names[0]: item.strip(), names[1]: None}
    if isinstance(item, dict) and names[0] in item and set(item) <= set(names):
        return {names[0]: str(item[names[0]]), names[1]: item.get(names[1])}
    raise ConfigError(f"card field {key!r} takes texts or dicts with keys {names}, got {item!r}")
