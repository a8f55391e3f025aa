"""Model cards: every section, recomputed independently; the schemas; profiles; staleness; serving; rendering."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit._card import _data
from deploykit._card._evaluate import point_metrics, weighted_metrics

from conftest import require
from helpers.signing import resign

SCHEMAS = Path(deploykit.__file__).parent / "_card" / "schemas"
DOCS = Path(__file__).resolve().parent.parent / "docs"

FULL_FIELDS = {
    "overview": "Scores how likely a customer is to cancel in the next 90 days.",
    "owners": [{"name": "Retention analytics", "contact": "retention-ml@example.com"}],
    "contact": "retention-ml@example.com",
    "license": "proprietary",
    "intended_use": ["rank customers for retention offers"],
    "users": ["retention campaign managers"],
    "out_of_scope": ["credit, pricing or employment decisions"],
    "decision_role": "advisory",
    "human_oversight": "a campaign manager reviews every list before offers go out",
    "contest": "customers write to support, who can remove them from a campaign",
    "provenance": "synthetic churn table from deploykit.demo.make_churn, split by row order into training and test rows",
    "time_range": "synthetic; no time dimension",
    "limitations": ["not validated on business customers"],
    "risks": [{"name": "offers skew towards month-to-month customers", "mitigation": "budget caps per segment"}],
    "monitoring": "the analytics team checks weekly AUC on labelled outcomes",
    "logging": "the gateway keeps request logs for 30 days",
}


# -- packages (one per kind of model) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def gender(churn):
    """A sensitive attribute that is not a model input, with one deliberately small group."""
    X_test = churn[1]
    rng = np.random.default_rng(7)
    return pd.Series(rng.choice(["female", "male", "nonbinary"], len(X_test), p=[0.47, 0.47, 0.06]),
                     index=X_test.index, name="gender")


@pytest.fixture(scope="module")
def binary(churn, churn_model, gender):
    X_train, X_test, y_train, y_test = churn
    return deploykit.package(churn_model, name="card-churn", X_train=X_train, y_train=y_train,
                             X_test=X_test.assign(gender=gender), y_test=y_test,
                             sensitive_features=["gender", "age"], card=FULL_FIELDS, verbose=False)


@pytest.fixture(scope="module")
def multiclass(iris_frame):
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris_frame
    model = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X[:100], y[:100])
    pkg = deploykit.package(model, name="card-iris", X_train=X[:100], y_train=y[:100], X_test=X[100:],
                            y_test=y[100:], verbose=False)
    return pkg, model, X[100:], y[100:]


@pytest.fixture(scope="module")
def regressor(diabetes_frame):
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = diabetes_frame
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(X[:330], y[:330])
    pkg = deploykit.package(model, name="card-diabetes", X_train=X[:330], y_train=y[:330], X_test=X[330:],
                            y_test=y[330:], sensitive_features=["sex"], verbose=False)
    return pkg, model, X[330:], y[330:]


def _metrics(card) -> dict:
    return {m["name"]: m for m in card.to_dict()["evaluation"]["metrics"]}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# -- binary classifier with sensitive features ---------------------------------------------------------
def test_binary_card_details_data_and_io(binary, churn, churn_model):
    from deploykit._runtime.jsonschema import instance_schema

    X_train, X_test, y_train, y_test = churn
    card = binary.card
    c = card.to_dict()
    md = c["model_details"]
    assert isinstance(card, deploykit.ModelCard) and (card.name, card.version) == ("card-churn", binary.version)
    assert md["model_sha256"] == binary.manifest["artifacts"]["model"]["sha256"] == card.model_sha256
    steps = {s["step"]: s for s in md["steps"]}
    assert steps["model"]["params"]["n_estimators"] == 30 and steps["model"]["params"]["max_depth"] == 6
    assert steps["pre/num/impute"]["params"]["strategy"] == "median"
    assert steps["pre/cat"]["params"]["handle_unknown"] == "ignore"
    assert md["libraries"]["scikit-learn"] == __import__("sklearn").__version__
    assert md["git"] is None or len(md["git"]["commit"]) == 40
    assert md["owners"] == [{"name": "Retention analytics", "contact": "retention-ml@example.com"}]
    assert c["intended_use"]["primary_uses"] == ["rank customers for retention offers"]
    assert c["intended_use"]["decision_role"] == "advisory"

    data = c["data"]
    assert (data["training"]["rows"], data["evaluation"]["rows"]) == (600, 200)
    assert data["training"]["sha256"] == _data.dataset_sha256(X_train, y_train) != data["evaluation"]["sha256"]
    assert data["training"]["label_balance"]["counts"] == {str(k): int(v) for k, v in y_train.value_counts().items()}
    assert data["evaluation"]["overlap_with_training"] == 0.0
    assert data["sensitive_features"] == ["gender", "age"]
    assert any("quartile" in note for note in data["sensitive_notes"])
    features = {f["name"]: f for f in data["features"]}
    assert set(features) == set(X_train.columns) and features["age"]["sensitive"]
    assert features["total_charges"]["missing_share"] == pytest.approx(X_train["total_charges"].isna().mean())
    assert features["contract"]["categories"] == sorted(X_train["contract"].unique())

    assert c["io"]["instance_schema"] == instance_schema(binary.schema, title="card-churn instance")
    assert c["io"]["classes"] == [0, 1]
    assert c["io"]["decision_threshold"]["agreement"] == 1.0
    assert "/card" in {e["path"] for e in c["deployment"]["endpoints"]}
    assert c["changelog"]["available"] is False and "first version" in c["changelog"]["summary"]


def test_binary_card_evaluation_recomputed_with_sklearn(binary, churn, churn_model):
    from sklearn import metrics

    _, X_test, _, y_test = churn
    predicted, proba = churn_model.predict(X_test), churn_model.predict_proba(X_test)
    got = _metrics(binary.card)
    assert got["accuracy"]["value"] == pytest.approx(metrics.accuracy_score(y_test, predicted))
    assert got["f1"]["value"] == pytest.approx(metrics.f1_score(y_test, predicted))
    assert got["roc_auc"]["value"] == pytest.approx(metrics.roc_auc_score(y_test, proba[:, 1]))
    assert got["log_loss"]["value"] == pytest.approx(metrics.log_loss(y_test, proba))
    for m in got.values():
        assert m["ci_low"] <= m["value"] <= m["ci_high"], m
        assert 0 < m["ci_high"] - m["ci_low"] < 0.35, m  # 200 rows: an interval, neither a point nor everything
    evaluation = binary.card.to_dict()["evaluation"]
    assert evaluation["confusion_matrix"]["matrix"] == metrics.confusion_matrix(y_test, predicted).tolist()
    assert evaluation["n_bootstrap"] == 1000 and evaluation["positive_class"] == 1


def test_binary_card_fairness_recomputed_by_hand(binary, churn, churn_model, gender):
    _, X_test, _, y_test = churn
    fairness = binary.card.to_dict()["fairness"]
    assert fairness["available"] and fairness["features"] == ["gender", "age"]
    predicted = pd.Series(churn_model.predict(X_test), index=X_test.index)
    by_gender = {g["group"]: g for g in fairness["by_feature"][0]["groups"]}
    assert set(by_gender) == {"gender=female", "gender=male", "gender=nonbinary"}
    rates = {}
    for value, rows in X_test.groupby(gender).groups.items():
        group = by_gender[f"gender={value}"]
        positives = y_test[rows] == 1
        assert group["count"] == len(rows)
        assert group["selection_rate"] == pytest.approx((predicted[rows] == 1).mean())
        assert group["tpr"] == pytest.approx((predicted[rows][positives] == 1).mean())
        assert group["fpr"] == pytest.approx((predicted[rows][~positives] == 1).mean())
        assert group["small"] == (len(rows) < 30)
        rates[value] = group
    differences = fairness["by_feature"][0]["differences"]
    compared = [g for g in rates.values() if g["count"] >= 30]  # the small group is shown but never compared
    assert len(compared) == 2 and fairness["by_feature"][0]["groups_compared"] == 2
    selection = [g["selection_rate"] for g in compared]
    assert differences["demographic_parity_difference"] == pytest.approx(max(selection) - min(selection))
    tpr, fpr = [g["tpr"] for g in compared], [g["fpr"] for g in compared]
    assert differences["equalized_odds_difference"] == pytest.approx(max(max(tpr) - min(tpr), max(fpr) - min(fpr)))
    assert by_gender["gender=nonbinary"]["insufficient"] and any("nonbinary" in f for f in fairness["flagged"])
    ages = fairness["by_feature"][1]["groups"]
    assert len(ages) == 4 and sum(g["count"] for g in ages) == len(X_test)  # quartile bands of a numeric column
    intersection = fairness["intersection"]
    assert intersection["features"] == ["gender", "age"] and sum(g["count"] for g in intersection["groups"]) == len(X_test)
    hints = binary.card.to_dict()["risks"]["hints"]
    assert any(h["kind"] == "small_group" and "nonbinary" in h["message"] for h in hints)
    assert "fairness" in binary.card.plots()


def test_binary_card_explainability_matches_served_explanations(binary, churn):
    from deploykit._runtime.model import ModelRuntime
    from deploykit._schema import records

    explainability = binary.card.to_dict()["explainability"]
    assert explainability["algorithm"] == "shap.TreeExplainer" and explainability["endpoint"] == "/explain"
    assert explainability["background_rows"] == 100 and explainability["rows_explained"] == 200
    ranking = explainability["ranking"]
    assert {r["feature"] for r in ranking} == set(churn[1].columns)
    assert [r["mean_abs_shap"] for r in ranking] == sorted((r["mean_abs_shap"] for r in ranking), reverse=True)
    runtime = ModelRuntime.load(binary.model_dir)
    served = runtime.explain(runtime.frame({"instances": records(churn[1])}))
    expected = np.abs(np.asarray(served["values"])).mean(axis=0)
    assert {r["feature"]: r["mean_abs_shap"] for r in ranking} == pytest.approx(dict(zip(served["feature_names"], expected)))
    assert ranking[0]["feature"] == "contract"  # the synthetic label depends on it most


def test_card_files_are_in_the_package_and_verified(binary, tmp_path):
    m = binary.manifest
    for key, name in (("card_json", "card.json"), ("card_html", "card.html"), ("card_markdown", "card.md")):
        record = m["artifacts"][key]
        assert record["file"] == name
        assert deploykit._runtime.artifacts.sha256_file(binary.model_dir / name) == record["sha256"]
    assert m["card"]["sha256"] == m["artifacts"]["card_json"]["sha256"] and m["card"]["errors"] == 0
    for file, sha in m["card"]["plots"].items():
        assert deploykit._runtime.artifacts.sha256_file(binary.model_dir / file) == sha
    bento_model = binary.bento_path / "src" / "model"
    assert (bento_model / "card.json").read_bytes() == (binary.model_dir / "card.json").read_bytes()
    tampered = tmp_path / "tampered-card"
    shutil.copytree(binary.path, tampered)
    (tampered / "model" / "card.json").write_text("{}")
    with pytest.raises(deploykit.IntegrityError, match="card.json"):
        deploykit.Package.load(tampered).card


# -- multiclass and regression --------------------------------------------------------------------------
def test_multiclass_card(multiclass):
    from sklearn import metrics

    pkg, model, X_test, y_test = multiclass
    card = pkg.card
    got = _metrics(card)
    predicted, proba = model.predict(X_test), model.predict_proba(X_test)
    assert got["f1"]["value"] == pytest.approx(metrics.f1_score(y_test, predicted, average="macro"))
    assert got["recall"]["value"] == pytest.approx(metrics.recall_score(y_test, predicted, average="macro"))
    assert got["roc_auc"]["value"] == pytest.approx(metrics.roc_auc_score(y_test, proba, multi_class="ovr"))
    c = card.to_dict()
    assert c["evaluation"]["average"] == "macro" and np.asarray(c["evaluation"]["confusion_matrix"]["matrix"]).shape == (3, 3)
    assert c["io"]["decision_threshold"] is None and c["io"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert c["fairness"] == {"available": False, "reason": c["fairness"]["reason"]} and "sensitive_features=" in c["fairness"]["reason"]
    assert c["explainability"]["explained_class"] == "the predicted class of each row"
    assert set(card.plots()) == {"roc", "confusion_matrix", "shap_summary"}


def test_regressor_card(regressor):
    from sklearn import metrics

    pkg, model, X_test, y_test = regressor
    got = _metrics(pkg.card)
    predicted = model.predict(X_test)
    assert set(got) == {"mae", "rmse", "r2"}
    assert got["mae"]["value"] == pytest.approx(metrics.mean_absolute_error(y_test, predicted))
    assert got["rmse"]["value"] == pytest.approx(np.sqrt(metrics.mean_squared_error(y_test, predicted)))
    assert got["r2"]["value"] == pytest.approx(metrics.r2_score(y_test, predicted))
    c = pkg.card.to_dict()
    assert set(pkg.card.plots()) == {"residuals", "fairness", "shap_summary"}
    assert c["data"]["evaluation"]["label_balance"]["mean"] == pytest.approx(float(y_test.mean()))
    groups = c["fairness"]["by_feature"][0]["groups"]
    assert len(groups) == 2 and c["fairness"]["metrics"] == ["count", "mae", "mean_prediction"]
    for group in groups:
        rows = X_test["sex"].astype(str) == group["values"]["sex"]
        assert group["mae"] == pytest.approx(metrics.mean_absolute_error(y_test[rows], predicted[rows.to_numpy()]))
    assert c["io"]["output"]["probabilities"] is None and c["io"]["decision_threshold"] is None


def test_regressor_outcomes(regressor):
    pkg, model, X_test, y_test = regressor
    evaluation = pkg.card.to_dict()["evaluation"]
    calibration = evaluation["calibration"]
    assert calibration["kind"] == "regressor" and sum(b["count"] for b in calibration["bins"]) == len(y_test)
    predicted = model.predict(X_test)
    assert calibration["mean_bias"] == pytest.approx(float(np.mean(predicted - y_test)))
    benchmarks = {b["kind"]: b for b in evaluation["benchmarks"]}
    dummy = {m["name"]: m["value"] for m in benchmarks["dummy"]["metrics"]}
    mean = float(np.mean(regressor[0].card.to_dict()["data"]["training"]["label_balance"]["mean"]))
    assert dummy["mae"] == pytest.approx(float(np.mean(np.abs(y_test - mean))))
    assert "ridge regression" in benchmarks["baseline"]["name"]


def test_bootstrap_metrics_equal_sklearn_with_unit_weights():
    """The vectorised bootstrap computes exactly scikit-learn's metrics when every row counts once."""
    rng = np.random.default_rng(3)
    n = 250
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1), 2)  # rounded: ties in the scores
    cases = [
        (y, (p > 0.5).astype(int), np.c_[1 - p, p], "binary", [0, 1]),
    ]
    labels = np.array(["a", "b", "c"])
    yc = rng.choice(labels, n)
    raw = rng.random((n, 3)) + 0.6 * (yc[:, None] == labels)
    proba = raw / raw.sum(axis=1, keepdims=True)
    cases.append((yc, labels[proba.argmax(axis=1)], proba, "multiclass", list(labels)))
    yr = rng.normal(size=n)
    cases.append((yr, yr + rng.normal(scale=0.4, size=n), None, "regression", None))
    for y_true, predicted, proba, task, classes in cases:
        vectorised = weighted_metrics(np.ones((1, n)), y_true, predicted, proba, task, classes)
        expected = point_metrics(y_true, predicted, proba, task, classes)
        assert {k: float(v[0]) for k, v in vectorised.items()} == pytest.approx(expected, rel=1e-12), task


# -- schemas --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["binary", "multiclass", "regressor"])
def test_cards_are_valid_against_mct_and_envelope_schemas(which, request):
    import jsonschema

    pkg = request.getfixturevalue(which)
    pkg = pkg if isinstance(pkg, deploykit.Package) else pkg[0]
    envelope = json.loads((pkg.model_dir / "card.json").read_text())
    mct_schema = json.loads((SCHEMAS / "model_card_toolkit.v0.0.2.schema.json").read_text())
    jsonschema.Draft7Validator(mct_schema, format_checker=jsonschema.FormatChecker()).validate(envelope["model_card_toolkit"])
    own = json.loads((SCHEMAS / "model_card.schema.json").read_text())
    jsonschema.Draft202012Validator(own, format_checker=jsonschema.FormatChecker()).validate(envelope)
    mct = envelope["model_card_toolkit"]
    assert mct["model_details"]["version"]["name"] == pkg.version
    assert {m["type"] for m in mct["quantitative_analysis"]["performance_metrics"]} >= set(_metrics(pkg.card))
    assert len(mct["quantitative_analysis"]["graphics"]["collection"]) == len(pkg.card.plots())


def test_mct_schema_rejects_what_it_should():
    """The schema copy is the real one: extra root keys and non-string metric values are invalid."""
    import jsonschema

    schema = json.loads((SCHEMAS / "model_card_toolkit.v0.0.2.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert not validator.is_valid({"schema_version": "0.0.2", "deploykit": {}})
    assert not validator.is_valid({"quantitative_analysis": {"performance_metrics": [{"type": "accuracy", "value": 0.9}]}})
    shared = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "model_card_toolkit.v0.0.2.schema.json"
    if shared.exists():
        assert json.loads(shared.read_text()) == schema


def test_published_envelope_schema_is_the_packaged_one():
    assert (DOCS / "model-card.schema.json").read_text() == (SCHEMAS / "model_card.schema.json").read_text()


# -- profiles -------------------------------------------------------------------------------------------
BLOCKING = {
    "internal": set(),
    "eu-ai-act-high-risk": {"intended_use.primary_uses", "model_details.owners", "data.provenance",
                            "intended_use.human_oversight", "risks.limitations", "risks.risks"},
    "us-bank-mrm": {"intended_use.primary_uses", "model_details.owners", "data.provenance", "risks.limitations",
                    "review.validated_by"},
    # deployment.logging: met by the card's built-in record-keeping facts (tests/test_card_operations.py)
    "hipaa": {"data.deidentification", "intended_use.primary_uses", "model_details.owners", "deployment.access_control"},
}


@pytest.mark.parametrize("profile", list(BLOCKING))
def test_each_profile_blocks_on_its_fields(profile, regressor, binary):
    blank = regressor[0].card  # no user fields, but evaluated and with a sensitive feature
    findings = blank.validate(profile)
    assert {f.field for f in findings if f.severity == "error"} == BLOCKING[profile]
    for finding in findings:
        assert finding.message and finding.source and finding.fix, finding
        assert finding.severity in ("error", "warning")
    if profile != "internal":
        assert all(f.source.split()[0] in ("EU", "SR", "HIPAA", "ECOA", "Regulation") for f in findings if f.severity == "error")
    filled = [f.field for f in binary.card.validate(profile) if f.severity == "error"]
    expected_left = {"us-bank-mrm": ["review.validated_by"], "hipaa": ["data.deidentification", "deployment.access_control"]}
    assert sorted(filled) == sorted(expected_left.get(profile, []))


def test_eu_profile_needs_evaluation_and_fairness(multiclass):
    fields = {f.field: f for f in multiclass[0].card.validate("eu-ai-act-high-risk") if f.severity == "error"}
    assert "fairness" in fields and "Annex IV" in fields["fairness"].source
    assert "sensitive_features=" in fields["fairness"].fix
    assert "fairness" not in {f.field for f in multiclass[0].card.validate("us-bank-mrm") if f.severity == "error"}


def test_packaging_under_a_profile_refuses_while_errors_remain(churn, churn_model):
    X_train, X_test, y_train, y_test = churn
    with pytest.raises(deploykit.CardValidationError) as info:
        deploykit.package(churn_model, name="card-refused", X_train=X_train, y_train=y_train, X_test=X_test,
                          y_test=y_test, card={"intended_use": "retention offers"}, profile="eu-ai-act-high-risk",
                          verbose=False)
    message = str(info.value)
    assert info.value.profile == "eu-ai-act-high-risk"
    for field in ("'human_oversight'", "'owners'", "'provenance'", "'limitations'", "'risks'", "sensitive_features="):
        assert field in message, field
    assert "Annex IV" in message and "intended_use.primary_uses" not in {f.field for f in info.value.findings}
    assert not any(p.name.isdigit() for p in deploykit._paths.packages_dir("card-refused").iterdir())


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"card": {"intended_usage": "x"}}, deploykit.ConfigError, "did you mean 'intended_use'"),
        ({"card": {"decision_role": "sometimes"}}, deploykit.ConfigError, "advisory, automated"),
        ({"profile": "gdpr"}, deploykit.ConfigError, "internal, eu-ai-act-high-risk, us-bank-mrm, hipaa"),
        ({"sensitive_features": ["religion"]}, deploykit.SchemaError, "'religion' is not a column of X_test"),
        ({"sensitive_features": pd.Series(["a"] * 5, name="g")}, deploykit.SchemaError, "has 5 rows but X_test has 200"),
    ],
)
def test_card_arguments_are_checked_before_packaging(kwargs, error, fragment, churn, churn_model):
    X_train, X_test, y_train, y_test = churn
    with pytest.raises(error, match=fragment):
        deploykit.package(churn_model, name="card-bad", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                          verbose=False, **kwargs)


def test_sensitive_features_as_an_aligned_frame(churn, gender):
    frame, notes = _data.sensitive_frame(gender.to_frame().assign(senior=churn[1]["age"] >= 65), churn[1], churn[1])
    assert list(frame.columns) == ["gender", "senior"] and notes == []
    assert frame["senior"].tolist() == (churn[1]["age"] >= 65).astype(str).tolist()


def test_user_fields_default_from_config(tmp_path, monkeypatch):
    from deploykit._card._fields import read_user_fields

    monkeypatch.setenv("DEPLOYKIT_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text('[card]\nowners = ["Risk team"]\nlicense = "proprietary"\n')
    fields = read_user_fields({"license": "Apache-2.0"})
    assert fields["owners"] == [{"name": "Risk team", "contact": None}] and fields["license"] == "Apache-2.0"


# -- staleness ------------------------------------------------------------------------------------------
def test_deploy_refuses_a_card_evaluated_on_the_training_data(churn, churn_model):
    X_train, _, y_train, _ = churn
    pkg = deploykit.package(churn_model, name="card-leaky", X_train=X_train, y_train=y_train, X_test=X_train,
                            y_test=y_train, explain=False, verbose=False)
    assert [f.field for f in pkg.card.errors()] == ["evaluation.independence"]
    with pytest.raises(deploykit.CardValidationError, match="evaluation data is the training data"):
        deploykit.deploy(pkg, verbose=False)
    shuffled = X_train.sample(frac=1, random_state=0)
    assert _data.overlap_share(X_train, shuffled) == 1.0  # the same rows in another order are caught too


def test_deploy_refuses_a_stale_card(binary, churn, tmp_path):
    from sklearn.dummy import DummyClassifier

    from deploykit._runtime import artifacts

    copy = tmp_path / "stale"
    shutil.copytree(binary.path, copy)
    manifest = json.loads((copy / "model" / "deploykit.json").read_text())
    other = DummyClassifier().fit(churn[0], churn[2])
    manifest["artifacts"]["model"] = artifacts.dump_model(other, copy / "model", artifacts.SKOPS).to_dict()
    (copy / "model" / "deploykit.json").write_text(json.dumps(manifest))
    resign(copy)  # a trusted key signed it: the card check still refuses it
    stale = deploykit.Package.load(copy)
    with pytest.raises(deploykit.CardValidationError, match="model card is stale") as info:
        deploykit.deploy(stale, verbose=False)
    assert binary.card.model_sha256[:12] in str(info.value) and manifest["artifacts"]["model"]["sha256"][:12] in str(info.value)
    assert not [d for d in deploykit.deployments() if d.version == stale.version and d.name == "card-churn"]


def test_deploy_with_a_profile_refuses_an_incomplete_card(binary):
    with pytest.raises(deploykit.CardValidationError, match="deploying card-churn v.* under profile 'hipaa'") as info:
        deploykit.deploy(binary, profile="hipaa", verbose=False)
    assert "'deidentification': ..." in str(info.value) and "'access_control': ..." in str(info.value)
    assert {f.field for f in info.value.findings} == {"data.deidentification", "deployment.access_control"}


# -- change log -----------------------------------------------------------------------------------------
def test_changelog_against_the_previous_version(binary, churn, gender):
    from deploykit.demo import churn_pipeline

    X_train, X_test, y_train, y_test = churn
    model = churn_pipeline().set_params(model__n_estimators=60, model__max_depth=4).fit(X_train, y_train)
    second = deploykit.package(model, name="card-churn", X_train=X_train, y_train=y_train,
                               X_test=X_test.assign(gender=gender), y_test=y_test,
                               sensitive_features=["gender"], card=FULL_FIELDS, verbose=False)
    log = second.card.to_dict()["changelog"]
    assert log["available"] and log["previous_version"] == binary.version
    changed = {h["parameter"]: (h["before"], h["after"]) for h in log["model"]["hyperparameters"]}
    assert changed == {"model.n_estimators": (30, 60), "model.max_depth": (6, 4)}
    before, after = _metrics(binary.card), _metrics(second.card)
    rows = {m["name"]: m for m in log["metrics"]}
    assert rows["accuracy"]["before"] == before["accuracy"]["value"] and rows["accuracy"]["after"] == after["accuracy"]["value"]
    assert log["schema"] == {"added": [], "removed": [], "changed": [], "order_changed": False}
    assert "model.n_estimators 30 → 60" in log["summary"]
    assert second.card.to_dict()["model_card_toolkit"]["model_details"]["version"]["diff"].startswith(log["summary"])
    assert log["same_rows"] and log["rows_note"] is None and log["fields"] == []
    dropped = {(f["features"], f["name"]) for f in log["fairness"] if f["after"] is None}
    assert ("age", "demographic_parity_difference") in dropped  # v2 no longer measures age
    # the previous version, run on this version's rows, scores what its own card says
    previous = {b["kind"]: b for b in second.card.to_dict()["evaluation"]["benchmarks"]}["previous"]
    assert previous["available"] and previous["name"] == f"v{binary.version} (previous version)"
    own = {m["name"]: m["value"] for m in previous["metrics"]}
    assert own["roc_auc"] == pytest.approx(before["roc_auc"]["value"]) and own["recall"] == pytest.approx(before["recall"]["value"])

    fields = {**FULL_FIELDS, "intended_use": ["rank customers for win-back calls"]}
    third = deploykit.package(model, name="card-churn", X_train=X_train, y_train=y_train, X_test=X_test.iloc[:150],
                              y_test=y_test.iloc[:150], card=fields, explain=False, fast_path=False, verbose=False)
    log = third.card.to_dict()["changelog"]
    assert not log["same_rows"] and "evaluated on different rows" in log["summary"] and "different rows" in log["rows_note"]
    assert log["fields"] == [{"field": "intended_use", "before": ["rank customers for retention offers"],
                              "after": ["rank customers for win-back calls"]}]
    assert "card text changed: intended_use" in log["summary"]
    html = third.card.to_html()
    assert "were evaluated on different rows" in html[html.index('id="changelog"'):]


def test_schema_diff():
    from deploykit._card._changelog import schema_diff

    old = {"columns": [{"name": "a", "kind": "integer", "dtype": "int64", "nullable": False, "min": 0, "max": 9},
                       {"name": "b", "kind": "category", "dtype": "object", "nullable": False, "categories": ["x", "y"]}]}
    new = {"columns": [{"name": "b", "kind": "category", "dtype": "object", "nullable": True, "categories": ["y", "z"]},
                       {"name": "c", "kind": "number", "dtype": "float64", "nullable": False, "min": 0.0, "max": 1.0}]}
    diff = schema_diff(old, new)
    assert diff["added"] == ["c"] and diff["removed"] == ["a"]
    assert {"column": "b", "fact": "nullable", "before": False, "after": True} in diff["changed"]
    assert {"column": "b", "fact": "categories", "before": ["x"], "after": ["z"]} in diff["changed"]


# -- formats and display --------------------------------------------------------------------------------
def test_formats_and_save(binary, tmp_path):
    import yaml

    card = binary.card
    written = card.save(tmp_path, stem="churn")
    assert json.loads(written["json"].read_text()) == card.to_dict()
    assert deploykit.ModelCard.load(tmp_path / "churn.json").to_dict() == card.to_dict()
    assert set(written["plots"]) == {"roc", "confusion_matrix", "calibration", "fairness", "shap_summary"}
    markdown = written["markdown"].read_text()
    assert markdown.startswith("---\n")
    front = yaml.safe_load(markdown.split("---\n")[1])
    assert front["license"] == "other" and front["pipeline_tag"] == "tabular-classification"
    results = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert results["accuracy"] == pytest.approx(_metrics(card)["accuracy"]["value"])
    assert front["deploykit"]["model_sha256"] == card.model_sha256
    for name, path in written["plots"].items():
        assert f"](churn-{name}.png)" in markdown and path.exists()
    for heading in ("## Model details", "## Intended use", "## Data", "## Inputs and outputs", "## Evaluation",
                    "## Fairness", "## Explainability", "## Risks and limitations", "## Deployment", "## Change log"):
        assert heading in markdown, heading
    html = written["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "Generated by deploykit" in html
    assert html.index('id="verdict"') < html.index('id="details"')  # the verdict comes first
    for anchor in ("details", "use", "data", "io", "evaluation", "fairness", "explainability", "risks", "deployment",
                   "changelog", "validation"):
        assert f'<section id="{anchor}">' in html, anchor
    assert 'src="http' not in html and "<link" not in html and "<script" not in html  # self-contained
    assert "@media print" in html and "&#34;" not in html.split("</style>")[0]  # CSS is not HTML-escaped
    assert "ModelCard card-churn" in repr(card) and "0 errors" in repr(card)
    assert "Model card" in card._repr_html_() and "data:image/png;base64," in card._repr_html_()


def _inline_pngs(html: str) -> list[bytes]:
    import re

    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_html_carries_its_plots_inline(binary):
    pngs = _inline_pngs(binary.card.to_html())
    assert len(pngs) == 5
    for png in pngs:
        width, height = _png_size(png)
        assert 300 <= width <= 1200 and 250 <= height <= 1400, (width, height)


# -- served ---------------------------------------------------------------------------------------------
@pytest.mark.serve
def test_card_is_served_by_a_running_deployment(binary):
    import httpx

    dep = deploykit.deploy(binary, verbose=False)
    try:
        assert isinstance(dep.card, deploykit.ModelCard) and dep.card.to_dict() == binary.card.to_dict()
        page = httpx.get(f"{dep.url}/card", timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.content == (binary.model_dir / "card.html").read_bytes()
        as_json = httpx.get(f"{dep.url}/card.json", timeout=30)
        assert as_json.headers["content-type"] == "application/json"
        assert deploykit._runtime.artifacts.sha256_bytes(as_json.content) == binary.manifest["card"]["sha256"]
        assert as_json.json()["model_details"]["model_sha256"] == binary.manifest["artifacts"]["model"]["sha256"]
    finally:
        dep.stop()


def test_a_package_without_a_card_answers_404(binary, tmp_path):
    """Packages made before cards existed: the same service code answers 404 with the error body."""
    copy = tmp_path / "no-card"
    shutil.copytree(binary.path, copy)
    manifest = json.loads((copy / "model" / "deploykit.json").read_text())
    for key in ("card_json", "card_html", "card_markdown"):
        del manifest["artifacts"][key]
    del manifest["card"]
    (copy / "model" / "deploykit.json").write_text(json.dumps(manifest))
    assert deploykit.Package.load(copy).card is None
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from fastapi.testclient import TestClient; from deploykit_runtime.service import app;"
        "c = TestClient(app); r = c.get('/card'); j = c.get('/card.json');"
        "print(json.dumps([r.status_code, r.json(), j.status_code, c.get('/schema').status_code]))"
    )
    env = {**__import__("os").environ, "DEPLOYKIT_PACKAGE_DIR": str(copy / "model")}
    out = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    status, body, json_status, schema_status = json.loads(out.stdout.strip().splitlines()[-1])
    assert (status, json_status, schema_status) == (404, 404, 200)
    assert set(body) == {"error", "details"} and "has no model card" in body["error"] and "package the model again" in body["error"]


# -- looked at in a real browser ------------------------------------------------------------------------
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html_path: Path, png_path: Path, tmp_path: Path, height: int = 5200) -> bytes:
    """Render a page with headless Chromium, as a reviewer's browser would show it."""
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png_path}",
               f"--window-size=1200,{height}", "--hide-scrollbars", html_path.resolve().as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert png_path.exists(), f"Chromium wrote no screenshot for {html_path}"
    return png_path.read_bytes()


@pytest.mark.browser
def test_card_renders_with_its_plots_in_chromium(binary, tmp_path):
    from PIL import Image

    require(_chromium() is not None, "Chromium", "apt-get install -y chromium (Debian's package, /usr/bin/chromium)")
    written = binary.card.save(tmp_path / "card")
    image = Image.open(io.BytesIO(screenshot(written["html"], tmp_path / "card.png", tmp_path))).convert("RGB")
    assert image.size == (1200, 5200)
    pixels = np.asarray(image).astype(int)
    not_white = (pixels.min(axis=2) < 235).mean()
    colourful = (pixels.max(axis=2) - pixels.min(axis=2) > 60).mean()  # text is grey; the plots are in colour
    assert not_white > 0.05, f"only {not_white:.1%} of the page is not white: did it render?"
    assert colourful > 0.01, f"only {colourful:.2%} of the page is in colour: are the plots there?"
    # the plots, as decoded from the page, hold pictures, not empty canvases
    for png in _inline_pngs(written["html"].read_text()):
        plot = np.asarray(Image.open(io.BytesIO(png)).convert("L")).astype(int)
        assert plot.std() > 20 and (plot < 128).mean() > 0.005


def test_docs_example_card_is_consistent(monkeypatch):
    import jsonschema

    from deploykit._runtime.signature import TRUSTED_ENV

    example = DOCS / "examples"
    # the example's approval is signed by its reviewer's own key: trusted here as the example's machine trusted it
    monkeypatch.setenv(TRUSTED_ENV, (example / "churn-card-reviewer.pub").read_text())
    envelope = json.loads((example / "churn-card.json").read_text())
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "model_card.schema.json").read_text())).validate(envelope)
    mct_schema = json.loads((SCHEMAS / "model_card_toolkit.v0.0.2.schema.json").read_text())
    jsonschema.Draft7Validator(mct_schema).validate(envelope["model_card_toolkit"])
    html = (example / "churn-card.html").read_text()
    assert len(_inline_pngs(html)) == len(envelope["plots"]) >= 4
    assert deploykit.ModelCard(envelope).to_html() == html  # the committed page is what the committed JSON renders to
    decision = envelope["review"]["approvals"][0]
    assert decision["signature"]["key_id"] in html and "does not trust" not in html  # signed, by a trusted key
    markdown = (example / "churn-card.md").read_text()
    for name in envelope["plots"]:
        assert (example / f"churn-card-{name}.png").exists() and f"churn-card-{name}.png" in markdown
