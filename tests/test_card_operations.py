"""The card's operations sections: the monitoring plan and post-market monitoring from the package's monitoring
reference, and logging (EU AI Act Art. 12), access control and integrity from the code that does them."""

from __future__ import annotations

import copy
import inspect
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import deploykit
from deploykit._card._operations import ACTIONS, LOOPBACK
from deploykit._card._render import num
from deploykit._monitor.reference import CARD_SIZES

SCHEMAS = Path(deploykit.__file__).parent / "_card" / "schemas"
BUILTIN = ("monitoring_plan", "post_market", "record_keeping", "access", "signing")


@pytest.fixture(scope="module")
def card(churn_package):
    return churn_package.card


@pytest.fixture(scope="module")
def reference(churn_package):
    from deploykit._monitor.report import REFERENCE_ARTIFACT
    from deploykit._runtime.artifacts import read_verified

    record = churn_package.manifest.artifacts[REFERENCE_ARTIFACT]
    return json.loads(read_verified(churn_package.model_dir / record.file, record.sha256))


def _without_builtin(card: dict, **user) -> deploykit.ModelCard:
    """The card as one made before these sections (or with user text in place of them)."""
    data = copy.deepcopy(card)
    for key in BUILTIN:
        data["deployment"].pop(key)
    data["deployment"]["operations"] = {"monitoring": [], "logging": [], "source": None}
    data["deployment"].update(user)
    return deploykit.ModelCard(data)


# -- monitoring ----------------------------------------------------------------------------------------------
def test_the_monitoring_plan_is_the_packages_reference(card, reference):
    data = card.to_dict()
    plan = data["deployment"]["monitoring_plan"]
    assert plan["available"] and plan["false_alarm_rate"] == reference["alpha"] and plan["min_rows"] == reference["min_rows"]
    assert plan["window_sizes"] == list(CARD_SIZES) and plan["reference"]["rows"] == reference["rows"]
    assert [f["name"] for f in plan["features"]] == [f["name"] for f in reference["features"]]
    for feature in plan["features"]:
        for size in map(str, CARD_SIZES):
            assert feature["thresholds"][size] == reference["thresholds"][size][feature["name"]]
    for size in map(str, CARD_SIZES):
        assert plan["prediction"]["thresholds"][size] == reference["thresholds"][size]["(prediction)"]
    # the ordering: the reference was made from this card's SHAP ranking, and the card shows that reference
    top = [r["feature"] for r in data["explainability"]["ranking"][:3]]
    assert reference["top_features"] == top and len(top) == 3
    assert [f["name"] for f in plan["features"] if f["top_feature"]] == [f["name"] for f in reference["features"]
                                                                         if f["name"] in top]
    assert f"({', '.join(top)})" in plan["verdict_rule"] and f"{reference['alpha']:.0%} of windows" in plan["thresholds_rule"]
    rows = {r["item"]: r["value"] for r in data["deployment"]["operations"]["monitoring"]}
    assert rows["verdict"] == plan["verdict_rule"] and rows["thresholds"] == plan["thresholds_rule"]


def test_the_post_market_section_lists_the_shipped_alerts_and_capture_defaults(card):
    from deploykit._front.capture import Retention
    from deploykit._front.settings import DEFAULTS
    from deploykit._templates import read

    post = card.to_dict()["deployment"]["post_market"]
    shipped = [r for g in yaml.safe_load(read("monitoring/alerts.yml"))["groups"] for r in g["rules"]]
    assert [a["alert"] for a in post["alerts"]] == [r["alert"] for r in shipped]
    drift = post["alerts"][0]
    assert drift["for"] == shipped[0]["for"] and "{name} v{version}" in drift["when"] and "$labels" not in drift["when"]
    assert post["capture"]["fraction"] == DEFAULTS["capture"]["fraction"]
    assert post["capture"]["retention"] == f"{Retention().max_age / 86400:g} days, at most {Retention().max_rows:,} rows"


# -- logging, access, integrity ---------------------------------------------------------------------------------
def test_the_logging_section_states_what_the_code_does(card, churn_package, tmp_path):
    from deploykit import _deploy
    from deploykit._front import app, audit, auth
    from deploykit._security import keys
    from deploykit._security.audit import audit_key_path, frame
    from deploykit._security.signing import verify_package

    data = card.to_dict()["deployment"]
    log = data["record_keeping"]["audit_log"]
    with audit.AuditLog(tmp_path / "state", name="t", key_path=audit_key_path()) as writer:  # a real record
        written = writer.request(request_id="r1", version="1", key_id="k", method="POST", path="/predict", status=200,
                                 input=b"{}", output=b"{}")
    assert set(log["requests"]["fields"]) == set(written) - {"kind", "hash"}
    assert log["requests"]["endpoints"] == sorted(app.AUDITED)
    defaults = inspect.signature(audit.AuditLog).parameters
    assert log["checkpoints"]["every_records"] == defaults["checkpoint_every"].default == 1000
    assert log["checkpoints"]["every_seconds"] == app.CHECKPOINT_SECONDS == 60
    assert log["fsync"]["requests"] == defaults["fsync"].default and log["fsync"]["policies"] == list(audit.FSYNC_POLICIES)
    assert log["on_by_default"] is True and log["verify"].startswith("deploykit audit verify NAME")
    recorded = set(frame("churn")["action"].dropna())  # what packaging wrote to this name's trail
    assert recorded and recorded <= set(log["actions"]["recorded"])
    assert set(log["actions"]["recorded"]) == _recorded_actions() and len(ACTIONS) == len(set(ACTIONS))

    access = data["access"]
    assert access["scopes"] == list(auth.SCOPES) and access["exempt"] == sorted(auth.EXEMPT)
    assert access["routes"] == {route: sorted(scopes) for route, scopes in auth.ROUTES.items()}
    assert access["rate_limit"] == keys.DEFAULT_RATE and access["explain_quota"] == keys.DEFAULT_EXPLAIN_ROWS
    assert LOOPBACK == _deploy.LOOPBACK and all(host in access["default"] for host in LOOPBACK)
    assert data["signing"]["signed_by"] == verify_package(churn_package)  # the key that really signed this package
    assert data["signing"]["signed_by"] in data["integrity"]

    rows = {r["item"]: r["value"] for r in data["operations"]["logging"]}
    assert "every 1,000 records or 60 s" in rows["signed checkpoints"] and "audit.jsonl" in rows["audit trail"]


def _recorded_actions() -> set[str]:
    """Every action name deploykit's code passes to the audit trail (record_action, or keys' own _audit helper)."""
    source = Path(deploykit.__file__).parent
    calls = re.compile(r'(?:record_action|_audit)\(\s*[^,()]+,\s*"(\w+)"')
    return {m.group(1) for path in source.rglob("*.py") for m in calls.finditer(path.read_text())}


# -- formats ----------------------------------------------------------------------------------------------------
def test_html_markdown_and_mct_render_the_sections(card, reference):
    data = card.to_dict()
    plan = data["deployment"]["monitoring_plan"]
    feature = plan["features"][0]
    threshold = num(reference["thresholds"]["600"][feature["name"]]["ks"])
    html = card.to_html()
    section = html[html.index('id="deployment"'):html.index('id="changelog"')]
    for text in ("Monitoring plan", "Post-market monitoring", "Logging and record-keeping (EU AI Act Art. 12)",
                 "Access control and integrity", "DeployKitDrift", "every 1,000 records or 60 s", "audit.jsonl",
                 "deploykit audit verify NAME", data["deployment"]["signing"]["signed_by"], "600 rows"):
        assert text in section, text
    rows = section[section.index(f'<span class="dk-code">{feature["name"]}</span>'):]
    ks = rows[rows.index("<td>KS</td>"):]
    cells = ks[:ks.index("</tr>")].split('<td class="n">')[1:]
    assert cells[CARD_SIZES.index(600)].startswith(threshold + "</td>")  # the reference's KS threshold, 600-row column

    markdown = card.to_markdown()
    section = markdown[markdown.index("## Deployment"):markdown.index("## Change log")]
    for text in ("### Monitoring plan", "### Post-market monitoring", "### Logging and record-keeping (EU AI Act Art. 12)",
                 "`DeployKitDrift`", "every 1,000 records or 60 s", data["deployment"]["signing"]["signed_by"]):
        assert text in section, text
    line = next(line for line in section.splitlines() if line.startswith(f"| `{feature['name']}`"))
    assert line.split("|")[3 + CARD_SIZES.index(600)].strip() == num(reference["thresholds"]["600"][feature["name"]]["psi"])

    mct = data["model_card_toolkit"]
    mitigations = [r["mitigation_strategy"] for r in mct["considerations"]["ethical_considerations"]]
    assert any(plan["verdict_rule"] in m for m in mitigations) and any("Art. 12" in m for m in mitigations)
    jsonschema.Draft7Validator(json.loads((SCHEMAS / "model_card_toolkit.v0.0.2.schema.json").read_text())).validate(mct)
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "model_card.schema.json").read_text())).validate(data)


# -- profiles ---------------------------------------------------------------------------------------------------
def test_the_builtin_facts_meet_the_logging_and_monitoring_rules(card):
    for profile in ("eu-ai-act-high-risk", "us-bank-mrm", "hipaa"):
        fields = {f.field for f in card.validate(profile)}
        assert not fields & {"deployment.logging", "deployment.monitoring"}, profile

    older = _without_builtin(card.to_dict())
    eu = {f.field: f for f in older.validate("eu-ai-act-high-risk")}
    assert eu["deployment.logging"].severity == "warning" and "Art. 12" in eu["deployment.logging"].source
    assert "audit trail (deployment.record_keeping)" in eu["deployment.logging"].source
    assert "monitoring plan (deployment.monitoring_plan" in eu["deployment.monitoring"].source
    hipaa = {f.field: f for f in older.errors("hipaa")}
    assert "deployment.logging" in hipaa and hipaa["deployment.logging"].source.startswith("HIPAA")
    assert "made before deploykit described its monitoring plan" in older.to_html()


def test_the_users_own_text_still_shows_and_must_say_something(card):
    data = card.to_dict()
    own = "The operations team reviews the audit trail weekly and keeps it for seven years."
    with_text = copy.deepcopy(data)
    with_text["deployment"]["logging"] = own
    shown = deploykit.ModelCard(with_text)
    html = shown.to_html()
    assert own in html and "Logging and record-keeping (EU AI Act Art. 12)" in html
    assert f"as the owners describe it: {own}" in shown.to_markdown()
    assert "deployment.logging" not in {f.field for f in shown.validate("hipaa")}

    placeholder = copy.deepcopy(data)
    placeholder["deployment"]["logging"] = "TBD"
    found = {f.field: f for f in deploykit.ModelCard(placeholder).errors("hipaa")}
    assert "placeholder" in found["deployment.logging"].message
