"""Model card review: rules that read content, the approval workflow, and the deploy gate of the regulated profiles."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit._card import _approvals
from deploykit._card._profiles import validate

AUTHOR = "Dana Developer <dana@example.com>"
REVIEWER = "Ana Ruiz <ana.ruiz@bank.example>"
FIELDS = {
    "overview": "Scores how likely a customer is to cancel in the next 90 days.",
    "owners": [{"name": "Retention analytics", "contact": "retention-ml@example.com"}],
    "intended_use": ["rank customers for retention offers"],
    "users": ["retention campaign managers"],
    "out_of_scope": ["credit, pricing or employment decisions"],
    "decision_role": "advisory",
    "human_oversight": "a campaign manager reviews every list before any offer goes out",
    "contest": "customers write to support, who can remove them from a campaign",
    "provenance": "synthetic churn table from deploykit.demo.make_churn, split by row order into training and test rows",
    "time_range": "synthetic; no time dimension",
    "limitations": ["not validated on business customers"],
    "risks": [{"name": "offers skew towards month-to-month customers", "mitigation": "budget caps per segment"}],
    "monitoring": "the analytics team checks weekly AUC on labelled outcomes",
    "logging": "the gateway keeps request logs for 30 days",
    "validated_by": "Model risk team (Ana Ruiz), May 2026",
    "author": AUTHOR,
}
REGULATED = ("eu-ai-act-high-risk", "us-bank-mrm")


@pytest.fixture(scope="module")
def gender(churn):
    X_test = churn[1]
    return pd.Series(np.random.default_rng(11).choice(["female", "male"], len(X_test)), index=X_test.index, name="gender")


@pytest.fixture(scope="module")
def reviewed(churn, churn_model, gender):
    """A package whose card meets both regulated profiles on content: only the approval is missing."""
    X_train, X_test, y_train, y_test = churn
    return deploykit.package(churn_model, name="card-review", X_train=X_train, y_train=y_train, X_test=X_test,
                             y_test=y_test, sensitive_features=gender, card=FIELDS, explain=False, fast_path=False,
                             verbose=False)


def _copy(pkg, tmp_path) -> deploykit.Package:
    """A private copy of the package, without any decision recorded on the original."""
    target = tmp_path / "package"
    shutil.copytree(pkg.path, target)
    _approvals.path(target).unlink(missing_ok=True)
    return deploykit.Package.load(target)


def _own_key_id() -> str:
    from deploykit._card._operations import package_signer

    return package_signer()  # this machine's signing key: what signs a decision by default


def _rewrite(package_dir: Path, number: int, **changes) -> None:
    """Change fields of a recorded decision and sign it again with this machine's key, as a reviewer would have."""
    stored = json.loads(_approvals.path(package_dir).read_text())
    record = stored["approvals"][number]
    record.update(changes)
    record["signature"] = _approvals.sign(_approvals.payload(record))
    _approvals.path(package_dir).write_text(json.dumps(stored))


def _reviewer_key(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A reviewer's own Ed25519 key pair, as PEM files: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _with(card: dict, **fields) -> dict:
    """The envelope with some fields replaced, at their card paths."""
    from deploykit._card._fields import USER_FIELDS

    changed = copy.deepcopy(card)
    for key, value in fields.items():
        *parents, leaf = USER_FIELDS[key][1].split(".")
        target = changed
        for part in parents:
            target = target[part]
        target[leaf] = value
    return changed


# -- rules that read content ------------------------------------------------------------------------------
def test_the_reviewed_card_meets_both_regulated_profiles_on_content(reviewed):
    for profile in REGULATED:
        assert reviewed.card.errors(profile) == [], profile
    assert reviewed.card.to_dict()["review"]["author"] == {"name": "Dana Developer", "email": "dana@example.com",
                                                          "login": reviewed.card.to_dict()["review"]["author"]["login"],
                                                          "source": "card field 'author'"}


def test_placeholder_fields_and_a_constant_sensitive_column_fail_the_regulated_profiles(churn, churn_model):
    X_train, X_test, y_train, y_test = churn
    placeholders = {"intended_use": "TBD", "owners": ["n/a"], "provenance": "-", "human_oversight": "todo",
                    "limitations": ["TBD"], "risks": ["tbc"], "validated_by": "TBD", "users": ["?"]}
    region = pd.Series("north", index=X_test.index, name="region")  # one value: nothing to compare
    pkg = deploykit.package(churn_model, name="card-placeholders", X_train=X_train, y_train=y_train, X_test=X_test,
                            y_test=y_test, sensitive_features=region, card=placeholders, explain=False, fast_path=False,
                            verbose=False)
    eu = {f.field: f for f in pkg.card.errors("eu-ai-act-high-risk")}
    us = {f.field: f for f in pkg.card.errors("us-bank-mrm")}
    for field in ("intended_use.primary_uses", "model_details.owners", "data.provenance", "intended_use.human_oversight",
                  "risks.limitations", "risks.risks"):
        assert "placeholder" in eu[field].problem, field
    for field in ("intended_use.primary_uses", "model_details.owners", "data.provenance", "risks.limitations",
                  "review.validated_by"):
        assert "placeholder" in us[field].problem, field
    for findings, source in ((eu, "Art. 10(2)(f)"), (us, "12 CFR 1002.6(a)")):
        constant = findings["data.sensitive_features"]
        assert "region is constant ('north')" in constant.problem and source in constant.source
        assert constant.fix and constant.message.startswith(constant.problem)
    with pytest.raises(deploykit.CardValidationError, match="placeholder") as info:
        deploykit.deploy(pkg, profile="us-bank-mrm", verbose=False)
    assert "data.sensitive_features" in {f.field for f in info.value.findings}


def test_a_few_words_where_a_paragraph_is_due_fail(reviewed):
    card = _with(reviewed.card.to_dict(), provenance="from the warehouse", human_oversight="manager checks")
    eu = {f.field: f for f in validate(card, "eu-ai-act-high-risk") if f.severity == "error"}
    assert eu["data.provenance"].problem == "3 word(s) where a paragraph is due (at least 6)"
    assert eu["intended_use.human_oversight"].problem.startswith("2 word(s)")
    internal = {f.field for f in validate(card, "internal")}
    assert "data.provenance" not in internal  # the internal profile does not ask for provenance at all


def test_a_near_constant_sensitive_feature_fails(reviewed):
    card = copy.deepcopy(reviewed.card.to_dict())
    card["data"]["sensitive_summary"] = [{"name": "gender", "groups": 2, "comparable_groups": 1,
                                         "largest_group": "female", "largest_share": 0.9}]
    problem = {f.field: f.problem for f in validate(card, "eu-ai-act-high-risk")}["data.sensitive_features"]
    assert "gender has 1 group(s) of at least 30 rows (90% are 'female')" in problem


@pytest.mark.parametrize("validated_by, fragment", [
    ("self-validated by developer", "no independent review"),
    ("Reviewed by the developer on 2026-04-01", "no independent review"),
    ("Dana Developer, 2026-04-01", "names the model's author (Dana Developer)"),
    ("second line: DANA@example.com", "names the model's author"),
])
def test_a_validator_who_is_the_author_fails(reviewed, validated_by, fragment):
    card = _with(reviewed.card.to_dict(), validated_by=validated_by)
    for profile in REGULATED:
        errors = {f.field: f for f in validate(card, profile) if f.severity == "error"}
        assert fragment in errors["review.validated_by"].problem, profile
    assert "review.validated_by" in {f.field for f in validate(card, "internal") if f.severity == "warning"}


def test_automatic_declines_fail_the_eu_profile(reviewed):
    card = _with(reviewed.card.to_dict(), intended_use=["automatically decline applicants below the cut-off"])
    eu = {f.field: f for f in validate(card, "eu-ai-act-high-risk") if f.severity == "error"}
    assert "'automatically decline'" in eu["intended_use.decision_role"].problem
    assert "Art. 14(4)(d)" in eu["intended_use.decision_role"].source
    us = {f.field: f for f in validate(card, "us-bank-mrm")}
    assert us["intended_use.decision_role"].severity == "warning" and "1002.9" in us["intended_use.decision_role"].source


def test_bank_profile_cites_sr_26_2_and_names_sr_11_7_as_superseded():
    from deploykit._card._profiles import PROFILES

    sources = [rule.source for rule in PROFILES["us-bank-mrm"]]
    model_risk = [s for s in sources if "SR" in s]
    assert model_risk and all(s.startswith("SR 26-2 (supersedes SR 11-7)") for s in model_risk)
    assert not any("OCC 2011-12" in s for s in sources)


# -- approvals -----------------------------------------------------------------------------------------------
def test_the_author_cannot_approve(reviewed, tmp_path):
    card = _copy(reviewed, tmp_path).card
    for who in ("dana@example.com", "Dana Developer", "DANA  DEVELOPER <dana.other@example.com>", AUTHOR):
        with pytest.raises(deploykit.ConfigError, match="is the author of card-review"):
            card.approve(reviewer=who, role="developer", decision="approved")
    assert card.approvals == [] and not _approvals.path(tmp_path / "package").exists()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"reviewer": REVIEWER, "role": "validation", "decision": "ok"}, "not one of approved, rejected, conditions"),
    ({"reviewer": "TBD", "role": "validation"}, "does not say who decides"),
    ({"reviewer": REVIEWER, "role": ""}, "role '' does not say who decides"),
    ({"reviewer": REVIEWER, "role": "validation", "decision": "rejected"}, "needs notes"),
])
def test_a_decision_must_say_who_what_and_why(reviewed, tmp_path, kwargs, fragment):
    with pytest.raises(deploykit.ConfigError, match=fragment):
        _copy(reviewed, tmp_path).card.approve(**kwargs)


def test_a_card_not_loaded_from_a_package_cannot_be_approved(reviewed):
    with pytest.raises(deploykit.ConfigError, match="not loaded from a package"):
        deploykit.ModelCard(reviewed.card.to_dict()).approve(reviewer=REVIEWER, role="validation")


def test_an_approval_is_bound_to_the_card_sha256_and_shown_in_every_format(reviewed, tmp_path):
    import jsonschema

    pkg = _copy(reviewed, tmp_path)
    packaged = (pkg.model_dir / "card.json").read_bytes()
    entry = pkg.card.approve(reviewer=REVIEWER, role="model validation", decision="conditions",
                             notes="re-validate after the first quarter")
    assert entry["card_sha256"] == pkg.manifest["card"]["sha256"] == pkg.card.sha256
    assert entry["model_sha256"] == pkg.manifest["artifacts"]["model"]["sha256"]
    kid = _own_key_id()
    assert entry["signature"]["algorithm"] == "ed25519" and entry["signature"]["key_id"] == kid
    assert _approvals.verify(_approvals.payload(entry), entry["signature"]) == kid
    assert entry["time"].endswith("+00:00") and (entry["name"], entry["version"]) == ("card-review", reviewed.version)
    stored = json.loads((tmp_path / "package" / "approvals.json").read_text())
    assert stored["format"] == 1 and [a["reviewer"] for a in stored["approvals"]] == [REVIEWER]
    assert (pkg.model_dir / "card.json").read_bytes() == packaged  # the card file, and its recorded sha256, are untouched

    card = deploykit.Package.load(tmp_path / "package").card
    assert card.review["status"] == "conditions" and card.approvals[0]["reviewer"] == REVIEWER
    assert card.approvals[0]["key_id"] == kid and card.approvals[0]["trusted"] is True
    view = card.to_dict()
    assert view["review"]["status"] == "conditions" and view["review"]["card_sha256"] == card.sha256
    assert view["review"]["approvals"][0]["key_id"] == kid and f"signed by {kid}" in view["review"]["summary"]
    assert view["changelog"]["approvals"][0]["decision"] == "conditions"
    assert view["changelog"]["approvals"][0]["signed"] == f"signed by {kid}"
    mct = view["model_card_toolkit"]
    assert mct["model_details"]["documentation"].startswith("Review: conditions: conditions by Ana Ruiz")
    assert f"signed by {kid}" in mct["model_details"]["documentation"]
    assert "Ana Ruiz" in mct["model_details"]["version"]["diff"]
    schemas = Path(deploykit.__file__).parent / "_card" / "schemas"
    jsonschema.Draft7Validator(json.loads((schemas / "model_card_toolkit.v0.0.2.schema.json").read_text())).validate(mct)
    jsonschema.Draft202012Validator(json.loads((schemas / "model_card.schema.json").read_text())).validate(view)

    html = card.to_html()
    verdict = html[html.index('id="verdict"'):html.index('id="details"')]
    assert "conditions" in verdict and "Ana Ruiz" in verdict and "re-validate after the first quarter" in verdict
    assert f"signed by {kid}" in verdict and "unsigned" not in verdict
    assert "Review of this version" in html[html.index('id="changelog"'):]
    assert f"signed by {kid}" in html[html.index('id="changelog"'):]
    markdown = card.to_markdown()
    assert "Ana Ruiz" in markdown[markdown.index("## Verdict"):markdown.index("## Model details")]
    assert f"signed by {kid}" in markdown[markdown.index("## Verdict"):markdown.index("## Model details")]
    assert "**conditions** by Ana Ruiz" in markdown[markdown.index("## Change log"):]
    assert f"signed by {kid}" in markdown[markdown.index("## Change log"):]
    assert "conditions" in card._repr_html_() and "conditions>" in repr(card) and f"signed by {kid}" in card._repr_html_()
    saved = card.save(tmp_path / "review")
    again = deploykit.ModelCard.load(saved["json"])
    assert again.review["status"] == "conditions" and again.sha256 == card.sha256


# -- the deploy gate ----------------------------------------------------------------------------------------
def test_deploy_under_a_regulated_profile_is_refused_without_an_approval(reviewed, tmp_path):
    pkg = _copy(reviewed, tmp_path)
    for profile in REGULATED:
        with pytest.raises(deploykit.CardValidationError, match="nobody has approved its model card") as info:
            deploykit.deploy(pkg, profile=profile, verbose=False)
        assert info.value.profile == profile and [f.field for f in info.value.findings] == ["review.approvals"]
        assert "deploykit card approve card-review" in str(info.value)
        assert info.value.findings[0].source == _approvals.SOURCES[profile]
    assert not [d for d in deploykit.deployments() if d.name == "card-review"]


def test_deploy_is_refused_when_the_approval_came_from_the_author(reviewed, tmp_path):
    pkg = _copy(reviewed, tmp_path)
    with pytest.raises(deploykit.ConfigError, match="is the author"):
        pkg.card.approve(reviewer=AUTHOR, role="developer")
    # written around the API: the gate does not count it either
    forged = {"name": pkg.name, "version": pkg.version, "card_sha256": pkg.card.sha256, "model_sha256": pkg.card.model_sha256,
              "reviewer": "dana@example.com", "role": "developer", "decision": "approved", "notes": None,
              "time": "2026-05-01T10:00:00+00:00", "signature": None}
    _approvals.path(tmp_path / "package").write_text(json.dumps({"format": 1, "approvals": [forged]}))
    card = deploykit.Package.load(tmp_path / "package").card
    assert card.review["status"] == "not reviewed"
    with pytest.raises(deploykit.CardValidationError, match="no reviewer other than the author has approved this card"):
        deploykit.deploy(deploykit.Package.load(tmp_path / "package"), profile="eu-ai-act-high-risk", verbose=False)


def test_an_approval_of_another_card_or_a_rejection_does_not_count(reviewed, tmp_path):
    pkg = _copy(reviewed, tmp_path)
    pkg.card.approve(reviewer=REVIEWER, role="model validation")
    _rewrite(tmp_path / "package", 0, card_sha256="0" * 64)  # approved (and signed) an earlier card
    with pytest.raises(deploykit.CardValidationError, match="no reviewer other than the author"):
        deploykit.deploy(deploykit.Package.load(tmp_path / "package"), profile="us-bank-mrm", verbose=False)
    card = deploykit.Package.load(tmp_path / "package").card
    card.approve(reviewer=REVIEWER, role="model validation")
    card.approve(reviewer="Bo Lee <bo.lee@bank.example>", role="compliance", decision="rejected", notes="no challenger model")
    assert card.review["status"] == "rejected" and len(card.review["stale"]) == 1
    with pytest.raises(deploykit.CardValidationError, match="rejected by Bo Lee"):
        deploykit.deploy(deploykit.Package.load(tmp_path / "package"), profile="us-bank-mrm", verbose=False)


@pytest.mark.parametrize("edit", ["decision", "card", "forged", "key"])
def test_an_edited_or_forged_decision_is_refused_naming_it(reviewed, tmp_path, edit):
    pkg = _copy(reviewed, tmp_path)
    pkg.card.approve(reviewer="Bo Lee <bo.lee@bank.example>", role="compliance", decision="rejected", notes="no challenger")
    pkg.card.approve(reviewer=REVIEWER, role="model validation")
    stored = json.loads(_approvals.path(tmp_path / "package").read_text())
    record = stored["approvals"][0]
    if edit == "decision":
        record["decision"] = "approved"  # the rejection turned into an approval by hand
    elif edit == "card":
        record["card_sha256"] = "f" * 64
    elif edit == "forged":  # a signature copied from another decision
        record["signature"] = stored["approvals"][1]["signature"]
    else:  # names another key than it carries
        record["signature"] = {**record["signature"], "key_id": "0123456789abcdef"}
    _approvals.path(tmp_path / "package").write_text(json.dumps(stored))
    with pytest.raises(deploykit.IntegrityError) as info:
        deploykit.Package.load(tmp_path / "package").card
    message = str(info.value)
    assert "decision 1 of" in message and "approvals.json" in message and "Bo Lee" in message and "refused" in message
    assert ("changed after signing" in message) if edit != "key" else ("carries another public key" in message)
    with pytest.raises(deploykit.IntegrityError, match="decision 1 of the review inside the card"):
        deploykit.ModelCard({**reviewed.card.to_dict(), "review": {**reviewed.card.to_dict()["review"], "approvals": [record]}})


def test_an_unsigned_decision_is_shown_and_does_not_count(reviewed, tmp_path):
    pkg = _copy(reviewed, tmp_path)
    pkg.card.approve(reviewer=REVIEWER, role="model validation")
    stored = json.loads(_approvals.path(tmp_path / "package").read_text())
    stored["approvals"][0]["signature"] = None  # written around the API: not signed
    _approvals.path(tmp_path / "package").write_text(json.dumps(stored))
    card = deploykit.Package.load(tmp_path / "package").card
    assert card.review["status"] == "not reviewed" and card.review["unverified"][0]["reviewer"] == REVIEWER
    assert "unsigned: not counted" in card.to_dict()["review"]["summary"]
    html = card.to_html()
    assert "unsigned, not counted" in html[html.index('id="verdict"'):html.index('id="details"')]
    assert "unsigned: not counted" in card.to_markdown()
    with pytest.raises(deploykit.CardValidationError, match="no decision on this card is signed by a key this machine trusts"):
        deploykit.deploy(deploykit.Package.load(tmp_path / "package"), profile="eu-ai-act-high-risk", verbose=False)


def test_a_decision_signed_by_an_untrusted_key_counts_once_the_key_is_trusted(reviewed, tmp_path):
    from deploykit._card._attach import check_deployable
    from deploykit._runtime.signature import key_id, raw_public_key

    private, public = _reviewer_key(tmp_path, "ana")
    kid = key_id(raw_public_key(public.read_text()))
    pkg = _copy(reviewed, tmp_path)
    entry = pkg.card.approve(reviewer=REVIEWER, role="model validation", key=private)
    assert entry["signature"]["key_id"] == kid != _own_key_id()

    card = deploykit.Package.load(tmp_path / "package").card
    assert card.approvals[0]["key_id"] == kid and card.approvals[0]["trusted"] is False
    assert card.review["status"] == "not reviewed"
    shown = f"signed by {kid} (a key this machine does not trust)"
    assert shown in card.to_dict()["review"]["summary"] and shown in card.to_html() and shown in card.to_markdown()
    with pytest.raises(deploykit.CardValidationError, match=f"signed by {kid} \\(a key this machine does not trust\\)") as info:
        check_deployable(deploykit.Package.load(tmp_path / "package"), "us-bank-mrm")
    assert "deploykit keys trust" in info.value.findings[0].fix

    assert deploykit.keys.trust(public, name="Ana Ruiz") == kid
    try:
        card = deploykit.Package.load(tmp_path / "package").card
        assert card.review["status"] == "approved" and card.approvals[0]["trusted"] is True
        assert f"approved by {REVIEWER} (model validation) on {entry['time'][:10]}, signed by {kid}" in card.to_dict()["review"]["summary"]
        check_deployable(deploykit.Package.load(tmp_path / "package"), "us-bank-mrm")  # the deploy gate now passes
    finally:
        deploykit.keys.untrust(kid)
    assert deploykit.Package.load(tmp_path / "package").card.review["status"] == "not reviewed"


def test_an_approval_is_an_action_in_the_audit_trail(reviewed, tmp_path):
    from deploykit._security.audit import frame

    pkg = _copy(reviewed, tmp_path)
    entry = pkg.card.approve(reviewer=REVIEWER, role="model validation")
    actions = frame("card-review")
    last = actions[actions["action"] == "approve"].iloc[-1]
    assert last["what"] == {"version": pkg.version, "card_sha256": pkg.card.sha256, "reviewer": REVIEWER,
                            "role": "model validation", "decision": "approved", "signed_by": entry["signature"]["key_id"]}


@pytest.mark.serve
def test_deploy_with_another_reviewers_approval_succeeds(reviewed, tmp_path):
    pkg = _copy(reviewed, tmp_path)
    pkg.card.approve(reviewer=REVIEWER, role="model validation", decision="approved")
    dep = deploykit.deploy(deploykit.Package.load(tmp_path / "package"), profile="eu-ai-act-high-risk", verbose=False)
    try:
        assert dep.health()["ready"] and dep.card.review["status"] == "approved"
        served = httpx.get(f"{dep.url}/card.json", timeout=30)
        assert deploykit._runtime.artifacts.sha256_bytes(served.content) == dep.card.sha256  # the approved card is served
    finally:
        dep.stop()


# -- front ends -------------------------------------------------------------------------------------------
def test_cli_and_magic_record_decisions(reviewed, capsys, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from deploykit._cli import main
    from deploykit._runtime.signature import key_id, raw_public_key

    assert main(["card", "approve", "card-review", "--version", reviewed.version, "--reviewer", REVIEWER,
                 "--role", "model validation", "--decision", "approved"]) == 0
    out = capsys.readouterr().out
    assert f"recorded: approved by {REVIEWER} (model validation) on card-review v{reviewed.version}" in out
    assert f"signed by {_own_key_id()}; review status: approved" in out
    assert main(["card", "approve", "card-review", "--reviewer", AUTHOR, "--role", "developer"]) == 1
    assert "is the author" in capsys.readouterr().err
    assert main(["card", "card-review"]) == 0  # showing a card still works
    assert "review: approved" in capsys.readouterr().out

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "deploykit")
    private, public = _reviewer_key(tmp_path, "bo")
    deploykit.keys.trust(public, name="Bo Lee")
    try:
        result = shell.run_cell(f"%deploy card approve card-review --reviewer 'Bo Lee <bo.lee@bank.example>' --role compliance "
                                f"--decision conditions --notes 'quarterly re-check' --key {private}")
        assert result.success and isinstance(result.result, deploykit.ModelCard)
        last = deploykit.Package.load("card-review").card.approvals[-1]
        assert last["reviewer"] == "Bo Lee <bo.lee@bank.example>" and last["signature"]["key_id"] == last["key_id"] != _own_key_id()
        assert deploykit.Package.load("card-review").card.review["status"] == "conditions"
    finally:
        deploykit.keys.untrust(key_id(raw_public_key(public.read_text())))
