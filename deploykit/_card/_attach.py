"""Where the card meets packaging and deploying: write it into a package, and gate a deploy on it."""

from __future__ import annotations

from pathlib import Path

from .._runtime import artifacts
from .._runtime.manifest import Manifest
from ..exceptions import CardValidationError
from ._build import CARD_FORMAT, CardInputs, build
from ._modelcard import ModelCard, read_card  # noqa: F401 - read_card is also reached through here
from ._profiles import _KEY_OF as KEY_OF
from ._profiles import ERROR, Finding, validate

FILES = {"card_json": "json", "card_html": "html", "card_markdown": "markdown"}


def plan(card: dict | None, profile: str | None, sensitive_features, X_test, test, y_test) -> dict:
    """Check ``package()``'s card arguments up front; return what :class:`CardInputs` takes from them."""
    import importlib.util

    from ..exceptions import ConfigError
    from ._data import sensitive_frame
    from ._fields import read_user_fields
    from ._profiles import check_profile

    check_profile(profile)
    sensitive, notes = sensitive_frame(sensitive_features, X_test, test)
    if sensitive is not None and y_test is None:
        raise ConfigError("sensitive_features needs y_test: group metrics compare predictions with the true labels")
    if sensitive is not None and importlib.util.find_spec("fairlearn") is None:
        raise ConfigError("sensitive_features needs fairlearn for the group metrics: pip install 'deploykit[card]'")
    return {"user": read_user_fields(card), "profile": profile, "sensitive": sensitive, "sensitive_notes": notes}


def attach(inputs: CardInputs) -> ModelCard:
    """Build the card, write it beside the model in ``inputs.model_dir``, and record it in the manifest.

    Raises :class:`CardValidationError` when ``inputs.profile`` is set and the card has errors under it.
    """
    card = ModelCard(build(inputs))
    written = card.save(inputs.model_dir, stem="card")
    manifest = inputs.manifest
    for key, kind in FILES.items():
        manifest.artifacts[key] = artifacts.file_artifact(written[kind])
    findings = card.findings
    manifest.card = {
        "format": CARD_FORMAT,
        "file": written["json"].name,
        "sha256": manifest.artifacts["card_json"].sha256,
        "profile": inputs.profile,
        "errors": sum(f.severity == ERROR for f in findings),
        "warnings": sum(f.severity != ERROR for f in findings),
        "plots": {p.name: artifacts.sha256_file(p) for p in written["plots"].values()},
    }
    if inputs.profile:
        refuse_on_errors(card.to_dict(), findings, inputs.profile, "packaging")
    return card


def refuse_on_errors(card: dict, findings: list[Finding], profile: str, action: str) -> None:
    errors = [f for f in findings if f.severity == ERROR]
    _record_decision(card, profile, action, errors)
    if not errors:
        return
    name = f"{card['model_details']['name']} v{card['model_details']['version']}"
    keys = [KEY_OF[f.field] for f in errors if f.field in KEY_OF]
    todo = ([f"fill card={{{', '.join(f'{k!r}: ...' for k in keys)}}}"] if keys else [])
    todo += sorted({f.fix for f in errors if f.field not in KEY_OF and f.fix})
    listed = "; ".join(f"{f.field}{f': {f.problem}' if f.problem and f.problem != 'not filled' else ''} ({f.source})"
                       for f in errors)
    raise CardValidationError(
        f"{action} {name} stopped: its model card has {len(errors)} error(s) under profile {profile!r}: {listed}. "
        f"To fix: {'; '.join(todo)}. card.validate({profile!r}) says why each is asked",
        profile=profile, findings=errors,
    )


def _record_decision(card: dict, profile: str, action: str, errors: list[Finding]) -> None:
    """Issue 12: a profile's verdict on a card is a deploy action of the audit trail."""
    from .._security.audit import record_action

    details = card["model_details"]
    record_action(details["name"], "profile", {"version": str(details["version"]), "profile": profile, "during": action,
                                               "decision": "refused" if errors else "passed",
                                               "errors": [f.field for f in errors]})


def check_deployable(pkg, profile: str | None = None) -> None:
    """Refuse to deploy a package whose card is stale, or has errors under ``profile`` (or the packaged one).

    Stale means the card describes another model artifact than the one the package and its bento carry,
    or its evaluation data is the training data.
    """
    card = pkg.card
    profile = profile or (pkg.manifest.card or {}).get("profile")
    if card is None:
        if profile:
            raise CardValidationError(
                f"{pkg.name} v{pkg.version} has no model card, so profile {profile!r} cannot be met; package the model "
                "again with this deploykit (deploykit.package(...)) to give it one", profile=profile, findings=[])
        return
    _check_model_matches(pkg, card)
    data = card.to_dict()
    stale = [f for f in validate(data, "internal") if f.field == "evaluation.independence"]
    if stale:
        raise CardValidationError(
            f"refusing to deploy {pkg.name} v{pkg.version}: {stale[0].message}. Package it again with held-out rows "
            "as X_test/y_test so its card reports how the model does on data it has not seen",
            profile=profile, findings=stale)
    if profile:
        refuse_on_errors(data, validate(data, profile), profile, "deploying")
        from . import _approvals

        _approvals.require(card, profile)


def _check_model_matches(pkg, card: ModelCard) -> None:
    carried = {"package manifest": pkg.manifest.model.sha256}
    bento_model = Path(pkg.bento.get("path", "")) / "src" / "model"
    if pkg.bento and (bento_model / "deploykit.json").is_file():
        bento = Manifest.read(bento_model)
        carried["bento"] = bento.model.sha256
        bento_card = (bento.card or {}).get("sha256")
        if bento_card and bento_card != pkg.manifest.card["sha256"]:
            raise CardValidationError(
                f"refusing to deploy {pkg.name} v{pkg.version}: the bento at {bento_model.parent.parent} carries "
                f"a different card (sha256 {bento_card[:12]}…) than the package ({pkg.manifest.card['sha256'][:12]}…); "
                "package the model again so both are made together", profile=None, findings=[])
    for where, sha in carried.items():
        if sha != card.model_sha256:
            raise CardValidationError(
                f"refusing to deploy {pkg.name} v{pkg.version}: its model card is stale. The card describes the model "
                f"artifact with sha256 {card.model_sha256[:12]}…, but the {where} carries {sha[:12]}…. Package the "
                "model again with deploykit.package(...) so the card is made from the model being deployed",
                profile=None, findings=[])
