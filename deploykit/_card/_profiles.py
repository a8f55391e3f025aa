"""Validation profiles: which card fields a kind of review needs, how badly, and which text asks for it.

Each rule names the card field, its severity (an ``error`` blocks packaging and deploying under that
profile, a ``warning`` is shown), why the profile asks for it and the rule's source. The sources point a
reviewer at the text; they are a checklist aid, not legal advice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from ._fields import USER_FIELDS

ERROR, WARNING = "error", "warning"
_KEY_OF = {path: key for key, (_, path, _) in USER_FIELDS.items()}


@dataclass(frozen=True)
class Finding:
    """One problem a profile finds in a card."""

    severity: str
    field: str
    message: str
    source: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    field: str
    severity: str
    why: str
    source: str
    check: Callable[[dict], str | None] | None = None  # None: the user field at ``field`` must be filled

    def apply(self, card: dict) -> Finding | None:
        problem = self.check(card) if self.check else _empty(card, self.field)
        if problem is None:
            return None
        key = _KEY_OF.get(self.field)
        fix = f"card={{{key!r}: ...}} ({USER_FIELDS[key][2]})" if key else _AUTOMATIC_FIX.get(self.field, "")
        return Finding(self.severity, self.field, f"{problem}: {self.why}", self.source, fix)


def _get(card: dict, path: str):
    value = card
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _empty(card: dict, path: str) -> str | None:
    return None if _get(card, path) not in (None, "", []) else "not filled"


def _evaluated(card: dict) -> str | None:
    return None if card["evaluation"].get("available") else "no held-out evaluation"


def _independent(card: dict) -> str | None:
    data = card["data"]
    if data["evaluation"] is None:
        return None
    if data["evaluation"]["sha256"] == data["training"]["sha256"]:
        return "the evaluation data is the training data (same sha256)"
    if data["evaluation"].get("overlap_with_training") == 1.0:
        return "every evaluation row also appears in the training data"
    return None


def _fair(card: dict) -> str | None:
    return None if card["fairness"].get("available") else "no sensitive features were declared"


def _no_small_groups(card: dict) -> str | None:
    flagged = card["fairness"].get("flagged") or []
    return f"groups too small to compare: {', '.join(flagged[:6])}" if flagged else None


def _explained(card: dict) -> str | None:
    return None if card["explainability"].get("available") else "explanations are off"


_AUTOMATIC_FIX = {
    "evaluation": "pass X_test= and y_test= (held-out rows) to deploykit.package",
    "evaluation.independence": "pass held-out rows as X_test/y_test, not the training data",
    "fairness": "pass sensitive_features= (column names of X_test, or a Series/DataFrame aligned with X_test)",
    "fairness.flagged": "evaluate on more rows of the small groups, or say in card['limitations'] why they are few",
    "explainability": "package with explain=True",
}

_ALWAYS = [
    Rule("evaluation.independence", ERROR, "metrics measured on the training data overstate how the model performs",
         "deploykit: held-out evaluation", _independent),
]

PROFILES: dict[str, list[Rule]] = {
    "internal": _ALWAYS + [
        Rule("model_details.owners", WARNING, "someone must answer for the model", "deploykit internal profile"),
        Rule("intended_use.primary_uses", WARNING, "readers need to know what the model is for", "deploykit internal profile"),
        Rule("evaluation", WARNING, "without held-out metrics nobody can tell how well it works", "deploykit internal profile", _evaluated),
        Rule("risks.limitations", WARNING, "known weak spots should travel with the model", "deploykit internal profile"),
    ],
    "eu-ai-act-high-risk": _ALWAYS + [
        Rule("intended_use.primary_uses", ERROR, "the technical documentation must state the system's intended purpose",
             "EU AI Act (Regulation 2024/1689) Annex IV(1)(a)"),
        Rule("model_details.owners", ERROR, "the documentation names the provider", "EU AI Act Annex IV(1)(a)"),
        Rule("data.provenance", ERROR, "training data must be described: provenance, scope, how it was obtained, selected and labelled",
             "EU AI Act Annex IV(2)(d); Art. 10(2)"),
        Rule("intended_use.human_oversight", ERROR, "the human oversight measures must be assessed and described",
             "EU AI Act Annex IV(2)(e); Art. 14"),
        Rule("evaluation", ERROR, "validation and testing data and the metrics measured on them are required",
             "EU AI Act Annex IV(2)(g)", _evaluated),
        Rule("fairness", ERROR, "performance for the persons or groups the system is used on, and discriminatory impacts, must be measured",
             "EU AI Act Annex IV(2)(g) and (3); Art. 10(2)(f)", _fair),
        Rule("risks.limitations", ERROR, "capabilities and limitations in performance must be documented", "EU AI Act Annex IV(3)"),
        Rule("risks.risks", ERROR, "foreseeable unintended outcomes and sources of risk must be documented",
             "EU AI Act Annex IV(3); Art. 9"),
        Rule("intended_use.out_of_scope", WARNING, "deployers must be told of reasonably foreseeable misuse",
             "EU AI Act Art. 13(3)(b)(iii)"),
        Rule("intended_use.users", WARNING, "the persons or groups the system is intended to be used on must be stated",
             "EU AI Act Annex IV(2)(b)"),
        Rule("intended_use.decision_role", WARNING, "overseers must be able to decide not to use or to override an output",
             "EU AI Act Art. 14(4)(d)"),
        Rule("intended_use.contest", WARNING, "affected persons may ask for an explanation of a decision",
             "EU AI Act Art. 86"),
        Rule("data.time_range", WARNING, "the scope of the training data includes the period it covers", "EU AI Act Annex IV(2)(d)"),
        Rule("deployment.monitoring", WARNING, "a post-market monitoring plan is part of the documentation",
             "EU AI Act Annex IV(9); Art. 72"),
        Rule("deployment.logging", WARNING, "high-risk systems must log events automatically over their lifetime", "EU AI Act Art. 12"),
        Rule("explainability", WARNING, "deployers must be able to interpret the system's output", "EU AI Act Art. 13(1)", _explained),
        Rule("fairness.flagged", WARNING, "accuracy for small groups is not established", "EU AI Act Annex IV(3)", _no_small_groups),
    ],
    "us-bank-mrm": _ALWAYS + [
        Rule("intended_use.primary_uses", ERROR, "model documentation starts with a clear statement of purpose",
             "SR 11-7 / OCC 2011-12 §III (model development, implementation and use)"),
        Rule("model_details.owners", ERROR, "the model inventory names accountable owners", "SR 11-7 §VI (governance, policies and controls)"),
        Rule("data.provenance", ERROR, "data used in development must be assessed for quality and relevance and documented",
             "SR 11-7 §III"),
        Rule("evaluation", ERROR, "outcomes analysis compares model outputs with actual outcomes on held-out data",
             "SR 11-7 §V (model validation)", _evaluated),
        Rule("risks.limitations", ERROR, "limitations and assumptions must be documented and understood by users", "SR 11-7 §III, §VI"),
        Rule("review.validated_by", ERROR, "models are validated with effective challenge by staff independent of development",
             "SR 11-7 §V"),
        Rule("intended_use.users", WARNING, "the inventory records the model's users", "SR 11-7 §VI"),
        Rule("deployment.monitoring", WARNING, "ongoing monitoring confirms the model performs as intended", "SR 11-7 §V"),
        Rule("fairness", WARNING, "credit models are tested for disparate impact on protected classes",
             "ECOA / Regulation B (12 CFR 1002)", _fair),
        Rule("explainability", WARNING, "adverse action notices must state the principal reasons for a decision",
             "Regulation B, 12 CFR 1002.9(b)(2)", _explained),
    ],
    "hipaa": _ALWAYS + [
        Rule("data.deidentification", ERROR, "the package ships training rows (SHAP background) and evaluation rows (smoke "
             "sample); say whether they hold PHI and how they were de-identified", "HIPAA Privacy Rule, 45 CFR 164.514(b)"),
        Rule("intended_use.primary_uses", ERROR, "the purpose bounds the minimum necessary PHI",
             "HIPAA Privacy Rule, 45 CFR 164.502(b), 164.514(d)"),
        Rule("model_details.owners", ERROR, "a responsible party is assigned for the system handling ePHI",
             "HIPAA Security Rule, 45 CFR 164.308(a)(2)"),
        Rule("deployment.access_control", ERROR, "the service has no authentication of its own; describe who may call it and how "
             "callers are authenticated", "HIPAA Security Rule, 45 CFR 164.312(a)(1), 164.312(d)"),
        Rule("deployment.logging", ERROR, "activity in systems that use ePHI must be recorded and examinable",
             "HIPAA Security Rule, 45 CFR 164.312(b)"),
        Rule("risks.risks", WARNING, "risks to ePHI belong in the risk analysis", "HIPAA Security Rule, 45 CFR 164.308(a)(1)(ii)(A)"),
        Rule("deployment.monitoring", WARNING, "information system activity is reviewed regularly",
             "HIPAA Security Rule, 45 CFR 164.308(a)(1)(ii)(D)"),
    ],
}


def check_profile(profile: str | None) -> None:
    from ..exceptions import ConfigError

    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"profile {profile!r} is not known; choose one of {', '.join(PROFILES)}")


def validate(card: dict, profile: str) -> list[Finding]:
    """The findings of ``profile`` on a card's JSON envelope, errors first."""
    check_profile(profile)
    findings = [finding for rule in PROFILES[profile] if (finding := rule.apply(card)) is not None]
    return sorted(findings, key=lambda f: f.severity != ERROR)
