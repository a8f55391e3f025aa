"""Validation profiles: which card fields a kind of review needs, how badly, and which text asks for it.

Each rule names the card field, its severity (an ``error`` blocks packaging and deploying under that
profile, a ``warning`` is shown), why the profile asks for it and the rule's source. A field counts as
filled only when it says something (:mod:`deploykit._card._content`: no placeholders, a paragraph where
one is due). The sources point a reviewer at the text; they are a checklist aid, not legal advice.

US bank model risk: SR 26-2 (April 2026, issued by the Federal Reserve with the OCC and FDIC) supersedes
SR 11-7 (2011), which earlier versions of this profile cited. It is cited by topic, not by section.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from . import _content
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
    problem: str | None = None  # what is wrong, without why the profile asks

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
        return Finding(self.severity, self.field, f"{problem}: {self.why}", self.source, fix, problem)


def _get(card: dict, path: str):
    value = card
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _empty(card: dict, path: str) -> str | None:
    return _content.filled_problem(_get(card, path), path)


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


def _overlap(low: float, high: float):
    def check(card: dict) -> str | None:
        evaluation = card["data"]["evaluation"]
        share = (evaluation or {}).get("overlap_with_training") or 0.0
        if not low < share <= high:
            return None
        rows = evaluation.get("overlap_rows")
        counted = f"{rows} of {evaluation['rows']}" if rows is not None else f"{share:.1%} of the"
        return f"{counted} evaluation rows ({share:.1%}) are also training rows"
    return check


def _constant_sensitive(card: dict) -> str | None:
    return _content.constant_sensitive(card) if card["fairness"].get("available") else None


def _fairness_alarms(card: dict) -> str | None:
    alarms = [a for a in card["fairness"].get("alerts") or [] if a["status"] == "alarm"]
    if not alarms:
        return None
    shown = "; ".join(f"{a['name'].replace('_', ' ')} across {a['features']} {a['value']:.3f} "
                      f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}]" for a in alarms[:3])
    return f"the interval lies beyond the tolerance: {shown}"


def _fair(card: dict) -> str | None:
    return None if card["fairness"].get("available") else "no sensitive features were declared"


def _no_small_groups(card: dict) -> str | None:
    flagged = card["fairness"].get("flagged") or []
    return f"groups too small to compare: {', '.join(flagged[:6])}" if flagged else None


def _or_builtin(field: str, section: str):
    """A text field that deploykit's own facts (``deployment.<section>``, filled from its code) also answer.

    The user's text, when given, must still say something (it is shown beside the facts).
    """
    def check(card: dict) -> str | None:
        text = _get(card, field)
        if text not in (None, "", []):
            return _content.filled_problem(text, field)
        facts = (card.get("deployment") or {}).get(section)
        return None if facts and facts.get("available", True) else "not filled"
    return check


_BY_AUDIT = "met by deploykit's audit trail (deployment.record_keeping) when the card describes it, or by card={'logging': ...}"
_BY_MONITOR = ("met by deploykit's monitoring plan (deployment.monitoring_plan, from the package's monitoring reference), "
               "or by card={'monitoring': ...}")
_LOGGED = _or_builtin("deployment.logging", "record_keeping")
_MONITORED = _or_builtin("deployment.monitoring", "monitoring_plan")


def _explained(card: dict) -> str | None:
    return None if card["explainability"].get("available") else "explanations are off"


_AUTOMATIC_FIX = {
    "evaluation": "pass X_test= and y_test= (held-out rows) to deploykit.package",
    "evaluation.independence": "pass held-out rows as X_test/y_test, not the training data",
    "fairness": "pass sensitive_features= (column names of X_test, or a Series/DataFrame aligned with X_test)",
    "fairness.flagged": "evaluate on more rows of the small groups, or say in card['limitations'] why they are few",
    "fairness.alerts": "investigate the gap; mitigate it or say in card['risks'] why it is accepted and how it is watched",
    "explainability": "package with explain=True",
    "evaluation.overlap": "hold out rows the model never saw (drop duplicates of training rows from X_test)",
    "data.sensitive_features": "declare a sensitive feature that varies across the evaluation rows, with at least two "
                               "groups of 30 or more rows",
    "review.validated_by": "card={'validated_by': ...}: a reviewer independent of the model's development, and when",
    "intended_use.decision_role": "describe how a person reviews and can override each adverse decision "
                                  "(card={'human_oversight': ..., 'decision_role': 'advisory'})",
}

_SR = "SR 26-2 (supersedes SR 11-7)"
_HELD_OUT = "metrics measured on rows the model was trained on overstate how it performs"
_ALWAYS = [
    Rule("evaluation.independence", ERROR, _HELD_OUT, "deploykit: held-out evaluation", _independent),
    Rule("evaluation.overlap", WARNING, "any overlap flatters the metrics a little", "deploykit: held-out evaluation",
         _overlap(0.0, 0.01)),
]
_INTERNAL_CHECKS = [
    Rule("evaluation.overlap", WARNING, _HELD_OUT, "deploykit: held-out evaluation", _overlap(0.01, 0.999999)),
    Rule("review.validated_by", WARNING, "a review by the model's developer is no independent review",
         "deploykit internal profile", _content.self_validation),
    Rule("data.sensitive_features", WARNING, "a sensitive feature with a single group measures no disparity",
         "deploykit internal profile", _constant_sensitive),
]

PROFILES: dict[str, list[Rule]] = {
    "internal": _ALWAYS + [
        Rule("model_details.owners", WARNING, "someone must answer for the model", "deploykit internal profile"),
        Rule("intended_use.primary_uses", WARNING, "readers need to know what the model is for", "deploykit internal profile"),
        Rule("evaluation", WARNING, "without held-out metrics nobody can tell how well it works", "deploykit internal profile", _evaluated),
        Rule("risks.limitations", WARNING, "known weak spots should travel with the model", "deploykit internal profile"),
        *_INTERNAL_CHECKS,
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
             f"EU AI Act Annex IV(9); Art. 72 ({_BY_MONITOR})", _MONITORED),
        Rule("deployment.logging", WARNING, "high-risk systems must log events automatically over their lifetime",
             f"EU AI Act Art. 12 ({_BY_AUDIT})", _LOGGED),
        Rule("explainability", WARNING, "deployers must be able to interpret the system's output", "EU AI Act Art. 13(1)", _explained),
        Rule("evaluation.overlap", ERROR, "testing data must be separate from training data; overlapping rows make the "
             "accuracy reported for the system unreliable", "EU AI Act Annex IV(2)(g); Art. 10(1), 10(3)",
             _overlap(0.01, 0.999999)),
        Rule("data.sensitive_features", ERROR, "possible biases must be examined across the groups the system affects; "
             "a feature without groups to compare examines nothing", "EU AI Act Art. 10(2)(f); Annex IV(2)(g)",
             _constant_sensitive),
        Rule("review.validated_by", ERROR, "test reports are dated and signed by the responsible persons; a developer "
             "reviewing their own work is no independent test", "EU AI Act Annex IV(2)(g); Art. 17(1)(d)",
             _content.self_validation),
        Rule("intended_use.decision_role", ERROR, "overseers must be able to decide not to use, or to override or reverse, "
             "an output, and affected persons may ask for an explanation of decisions about them",
             "EU AI Act Art. 14(4)(d), Art. 86; GDPR Art. 22", _content.automatic_decisions),
        Rule("fairness.alerts", WARNING, "measures to detect, prevent and mitigate biases are required",
             "EU AI Act Art. 10(2)(f)-(g)", _fairness_alarms),
        Rule("fairness.flagged", WARNING, "accuracy for small groups is not established", "EU AI Act Annex IV(3)", _no_small_groups),
    ],
    "us-bank-mrm": _ALWAYS + [
        Rule("intended_use.primary_uses", ERROR, "model documentation starts with a clear statement of the model's purpose "
             "and intended use", _SR + " (model development and use)"),
        Rule("model_details.owners", ERROR, "the model inventory names accountable owners", _SR + " (governance and controls)"),
        Rule("data.provenance", ERROR, "data used in development must be assessed for quality and relevance and documented",
             _SR + " (model development)"),
        Rule("evaluation", ERROR, "outcomes analysis compares model outputs with actual outcomes on held-out data",
             _SR + " (validation: outcomes analysis)", _evaluated),
        Rule("evaluation.overlap", ERROR, "outcomes analysis on rows the model was fitted on is no test of it",
             _SR + " (validation: outcomes analysis)", _overlap(0.01, 0.999999)),
        Rule("risks.limitations", ERROR, "limitations and assumptions must be documented and understood by users",
             _SR + " (model development and use)"),
        Rule("review.validated_by", ERROR, "models are validated with effective challenge by staff independent of development",
             _SR + " (validation)"),
        Rule("review.validated_by", ERROR, "the validator must be independent of the model's development",
             _SR + " (validation)", _content.self_validation),
        Rule("data.sensitive_features", ERROR, "a disparate-impact test needs groups to compare; a constant attribute tests "
             "nothing", "ECOA / Regulation B, 12 CFR 1002.6(a) (effects test)", _constant_sensitive),
        Rule("intended_use.users", WARNING, "the inventory records the model's users", _SR + " (governance and controls)"),
        Rule("deployment.monitoring", WARNING, "ongoing monitoring confirms the model performs as intended",
             f"{_SR} (ongoing monitoring; {_BY_MONITOR})", _MONITORED),
        Rule("fairness", WARNING, "credit models are tested for disparate impact on protected classes",
             "ECOA / Regulation B, 12 CFR 1002.6(a) (effects test)", _fair),
        Rule("fairness.alerts", WARNING, "a disparity whose interval lies beyond the tolerance, or an adverse impact ratio "
             "below four-fifths, needs a business justification and a search for less discriminatory alternatives",
             "ECOA / Regulation B, 12 CFR 1002.6(a); four-fifths rule of thumb, 29 CFR 1607.4(D)", _fairness_alarms),
        Rule("intended_use.decision_role", WARNING, "an automatic decline is an adverse action: each needs a statement of "
             "its specific principal reasons", "Regulation B, 12 CFR 1002.9(a)(2), (b)(2)", _content.automatic_decisions),
        Rule("explainability", WARNING, "adverse action notices must state the principal reasons for a decision",
             "Regulation B, 12 CFR 1002.9(b)(2)", _explained),
    ],
    "hipaa": _ALWAYS + _INTERNAL_CHECKS[:1] + [
        Rule("data.deidentification", ERROR, "the package ships training rows (SHAP background) and evaluation rows (smoke "
             "sample); say whether they hold PHI and how they were de-identified", "HIPAA Privacy Rule, 45 CFR 164.514(b)"),
        Rule("intended_use.primary_uses", ERROR, "the purpose bounds the minimum necessary PHI",
             "HIPAA Privacy Rule, 45 CFR 164.502(b), 164.514(d)"),
        Rule("model_details.owners", ERROR, "a responsible party is assigned for the system handling ePHI",
             "HIPAA Security Rule, 45 CFR 164.308(a)(2)"),
        Rule("deployment.access_control", ERROR, "API keys are on only when deployed beyond localhost or with auth=True; "
             "describe who may call the service and how callers are authenticated",
             "HIPAA Security Rule, 45 CFR 164.312(a)(1), 164.312(d)"),
        Rule("deployment.logging", ERROR, "activity in systems that use ePHI must be recorded and examinable",
             f"HIPAA Security Rule, 45 CFR 164.312(b) ({_BY_AUDIT})", _LOGGED),
        Rule("risks.risks", WARNING, "risks to ePHI belong in the risk analysis", "HIPAA Security Rule, 45 CFR 164.308(a)(1)(ii)(A)"),
        Rule("deployment.monitoring", WARNING, "information system activity is reviewed regularly",
             f"HIPAA Security Rule, 45 CFR 164.308(a)(1)(ii)(D) ({_BY_MONITOR})", _MONITORED),
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
