"""The card's evidence, recomputed independently: decision settings, fairness intervals, outcomes, leakage, reproducibility."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

import deploykit
from deploykit._card import _data, _fairness
from deploykit._card._evaluate import evaluate
from deploykit._runtime.manifest import Manifest

from conftest import require


@pytest.fixture(scope="module")
def gender(churn):
    X_test = churn[1]
    return pd.Series(np.random.default_rng(5).choice(["female", "male"], len(X_test)), index=X_test.index, name="gender")


@pytest.fixture(scope="module")
def at_035(churn, churn_model, gender):
    """A binary model whose card is made at a decision threshold of 0.35."""
    X_train, X_test, y_train, y_test = churn
    return deploykit.package(churn_model, name="card-threshold", X_train=X_train, y_train=y_train, X_test=X_test,
                             y_test=y_test, sensitive_features=gender, card={"decision_threshold": 0.35},
                             explain=False, fast_path=False, verbose=False)


def _metrics(card) -> dict:
    return {m["name"]: m for m in card.to_dict()["evaluation"]["metrics"]}


# -- decision settings --------------------------------------------------------------------------------------
def test_metrics_at_threshold_035_match_a_recomputation(at_035, churn, churn_model, gender):
    from scipy.stats import ks_2samp
    from sklearn import metrics

    _, X_test, _, y_test = churn
    y = np.asarray(y_test)
    p = churn_model.predict_proba(X_test)[:, 1]
    flagged = np.where(p >= 0.35, 1, 0)
    assert (flagged != churn_model.predict(X_test)).any()  # the threshold matters on these rows
    got = _metrics(at_035.card)
    expected = {"accuracy": metrics.accuracy_score(y, flagged), "precision": metrics.precision_score(y, flagged),
                "recall": metrics.recall_score(y, flagged), "f1": metrics.f1_score(y, flagged),
                "roc_auc": metrics.roc_auc_score(y, p), "gini": 2 * metrics.roc_auc_score(y, p) - 1,
                "ks": ks_2samp(p[y == 1], p[y == 0]).statistic, "brier": metrics.brier_score_loss(y, p),
                "log_loss": metrics.log_loss(y, churn_model.predict_proba(X_test))}
    assert {k: got[k]["value"] for k in expected} == pytest.approx(expected, rel=1e-9)
    for m in got.values():
        assert m["ci_low"] <= m["value"] <= m["ci_high"], m
    c = at_035.card.to_dict()
    assert c["evaluation"]["confusion_matrix"]["matrix"] == metrics.confusion_matrix(y, flagged).tolist()
    precision, recall, f1, support = metrics.precision_recall_fscore_support(y, flagged)
    for k, row in enumerate(c["evaluation"]["per_class"]):
        values = {m["name"]: m["value"] for m in row["metrics"]}
        assert values == pytest.approx({"precision": precision[k], "recall": recall[k], "f1": f1[k]})
        assert row["support"] == support[k] and row["class"] == str(k)
    for group in c["fairness"]["by_feature"][0]["groups"]:
        rows = (gender == group["values"]["gender"]).to_numpy()
        assert group["selection_rate"] == pytest.approx(flagged[rows].mean())
        assert group["tpr"] == pytest.approx(flagged[rows & (y == 1)].mean())
        assert group["mean_score"] == pytest.approx(p[rows].mean())
        assert group["brier"] == pytest.approx(np.mean((p[rows] - y[rows]) ** 2))
    settings = c["io"]["decision_threshold"]
    assert (settings["positive_class"], settings["threshold"], settings["source"]) == (1, 0.35, "card fields")
    assert settings["agreement"] == pytest.approx(np.mean(flagged == churn_model.predict(X_test)))
    assert "POST /predict returns the model's own labels" in settings["served"]
    assert "P(1) ≥ 0.35" in at_035.card.to_html() and "P(1) ≥ 0.35" in at_035.card.to_markdown()


def test_the_positive_class_turns_every_rate_around():
    from sklearn import metrics

    rng = np.random.default_rng(4)
    y = rng.choice(["repaid", "default"], 400, p=[0.8, 0.2])
    p_default = np.clip(0.5 * (y == "default") + 0.6 * rng.random(400), 0, 1)
    proba = np.c_[p_default, 1 - p_default]  # classes in sorted order: default, repaid
    predicted = np.where(p_default >= 0.35, "default", "repaid")
    result = evaluate(y, predicted, proba, "binary", ["default", "repaid"], positive="default")
    got = {m["name"]: m["value"] for m in result["metrics"]}
    assert got["recall"] == pytest.approx(metrics.recall_score(y, predicted, pos_label="default"))
    assert got["precision"] == pytest.approx(metrics.precision_score(y, predicted, pos_label="default"))
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(y == "default", p_default))
    assert got["brier"] == pytest.approx(metrics.brier_score_loss(y == "default", p_default))
    assert result["positive_class"] == "default"
    per_class = {row["class"]: {m["name"]: m["value"] for m in row["metrics"]} for row in result["per_class"]}
    assert per_class["repaid"]["recall"] == pytest.approx(metrics.recall_score(y, predicted, pos_label="repaid"))


def test_decision_settings_are_checked():
    from deploykit._card._build import CardInputs, decision_settings
    from deploykit._card._fields import read_user_fields

    with pytest.raises(deploykit.ConfigError, match="strictly between 0 and 1"):
        read_user_fields({"decision_threshold": 1.5})
    inputs = lambda task, **user: CardInputs(model=object(), manifest={"name": "m", "task": task, "classes": [0, 1]},  # noqa: E731
                                             model_dir=None, train=None, y_train=None, test=None, y_test=None, user=user)
    with pytest.raises(deploykit.ConfigError, match="'positive_class' is 'yes', which is not one of the model's classes"):
        decision_settings(inputs("binary", positive_class="yes"))
    with pytest.raises(deploykit.ConfigError, match="apply to binary classifiers"):
        decision_settings(inputs("regression", decision_threshold=0.3))
    with pytest.raises(deploykit.ConfigError, match="needs a model with predict_proba"):
        decision_settings(inputs("binary", decision_threshold=0.3))
    settled = inputs("binary", positive_class="0")  # a label from JSON or TOML names the class by its text
    decision_settings(settled)
    assert (settled.positive, settled.favourable, settled.threshold) == (0, 1, None)


# -- fairness with uncertainty ----------------------------------------------------------------------------
def _synthetic(n=4200, seed=3):
    rng = np.random.default_rng(seed)
    group = rng.choice(["A", "B", "C", "D"], n, p=[0.5, 0.36, 0.135, 0.005])  # D: too few rows to compare
    y = (rng.random(n) < np.select([group == "C"], [0.45], 0.3)).astype(int)
    score = np.clip(0.35 * y + 0.65 * rng.random(n) + 0.08 * (group == "B"), 0, 1)
    return pd.DataFrame({"group": group}), y, (score >= 0.5).astype(int), np.c_[1 - score, score]


def _independent_bootstrap(groups, y, yhat, score, compared, draws=2000, seed=12345):
    """Resample rows with replacement and recompute every group rate and gap with pandas (its own RNG, no weights)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"g": groups, "y": y, "yhat": yhat, "s": score})
    per_group, gaps = [], []
    for _ in range(draws):
        sample = frame.iloc[rng.integers(0, len(frame), len(frame))]
        rates = sample.groupby("g").apply(lambda d: pd.Series({
            "selection_rate": d.yhat.mean(), "tpr": d.yhat[d.y == 1].mean(), "fpr": d.yhat[d.y == 0].mean(),
            "accuracy": (d.y == d.yhat).mean(), "brier": ((d.s - d.y) ** 2).mean()}), include_groups=False)
        per_group.append(rates)
        kept = rates.loc[compared]
        favourable = 1 - kept["selection_rate"]
        gaps.append({"demographic_parity_difference": np.ptp(kept["selection_rate"]),
                     "equalized_odds_difference": max(np.ptp(kept["tpr"]), np.ptp(kept["fpr"])),
                     "adverse_impact_ratio": favourable.min() / favourable.max()})
    stacked = pd.concat(per_group, keys=range(draws))
    intervals = {g: stacked.xs(g, level=1).quantile([0.025, 0.975]) for g in ["A", "B", "C"]}
    return intervals, pd.DataFrame(gaps).quantile([0.025, 0.975])


def test_group_intervals_match_an_independent_bootstrap():
    groups, y, yhat, proba = _synthetic()
    section = _fairness.fairness(y, yhat, groups, "binary", [0, 1], proba=proba)
    analysis = section["by_feature"][0]
    by_group = {g["values"]["group"]: g for g in analysis["groups"]}
    assert by_group["D"]["insufficient"] and not any(by_group[g]["insufficient"] for g in "ABC")
    intervals, gaps = _independent_bootstrap(groups["group"].to_numpy(), y, yhat, proba[:, 1], ["A", "B", "C"])
    for g in "ABC":
        for metric in ("selection_rate", "tpr", "fpr", "accuracy", "brier"):
            low, high = by_group[g]["ci"][metric]
            assert low <= by_group[g][metric] <= high
            assert (low, high) == pytest.approx(tuple(intervals[g][metric]), abs=0.01), (g, metric)
    for gap in analysis["gaps"]:
        if gap["name"] in gaps:
            assert (gap["ci_low"], gap["ci_high"]) == pytest.approx(tuple(gaps[gap["name"]]), abs=0.01), gap["name"]
    impact = analysis["adverse_impact"]
    assert (impact["ci_low"], impact["ci_high"]) == pytest.approx(tuple(gaps["adverse_impact_ratio"]), abs=0.01)
    assert "D" not in (impact["lowest_group"] + impact["reference_group"])


def test_an_alarm_needs_the_whole_interval_beyond_the_limit():
    groups, y, yhat, proba = _synthetic()
    section = _fairness.fairness(y, yhat, groups, "binary", [0, 1], proba=proba)
    statuses = []
    for gap in section["by_feature"][0]["gaps"]:
        if gap["status"] is None:
            continue
        expected = ("alarm" if gap["ci_low"] > 0.1 else "within tolerance" if gap["ci_high"] <= 0.1 else "inconclusive")
        assert gap["status"] == expected, gap
        statuses.append(gap["status"])
    assert "alarm" in statuses  # group C is flagged far more often
    # one tiny group with extreme rates alone raises nothing: it is insufficient, not compared
    tiny = groups.assign(group=np.where(groups["group"] == "D", "D", "A"))
    extreme = yhat.copy()
    extreme[(tiny["group"] == "D").to_numpy()] = 1
    quiet = _fairness.fairness(y, extreme, tiny, "binary", [0, 1], proba=proba)
    statuses = {g["name"]: g["status"] for g in quiet["by_feature"][0]["gaps"]}
    assert quiet["alerts"] == [] and statuses["demographic_parity_difference"] == "not enough groups"
    assert any("D" in flagged for flagged in quiet["flagged"])


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_group_metrics_with_unit_weights_are_fairlearns(task):
    rng = np.random.default_rng(9)
    n = 300
    groups = pd.DataFrame({"g": rng.choice(["a", "b", "c"], n)})
    if task == "binary":
        y, yhat, classes = rng.integers(0, 2, n), rng.integers(0, 2, n), [0, 1]
        proba = np.c_[1 - rng.random(n), rng.random(n)]
    elif task == "multiclass":
        classes = ["x", "y", "z"]
        y, yhat, proba = rng.choice(classes, n), rng.choice(classes, n), None
    else:
        y, yhat, classes, proba = rng.normal(size=n), rng.normal(size=n), None, None
    section = _fairness.fairness(y, yhat, groups, task, classes, proba=proba)
    data = _fairness._Arrays.make(y, yhat, proba, task, classes, None, None)
    masks = [(groups["g"] == g["values"]["g"]).to_numpy() for g in section["by_feature"][0]["groups"]]
    draws = _fairness.group_draws(np.ones((1, n)), masks, data)
    for k, group in enumerate(section["by_feature"][0]["groups"]):
        for metric in section["metrics"][1:]:
            assert draws[metric][0, k] == pytest.approx(group[metric], rel=1e-12), (metric, group["group"])


def test_every_group_of_a_card_has_intervals(at_035):
    fairness = at_035.card.to_dict()["fairness"]
    assert fairness["n_bootstrap"] == 1000 and fairness["tolerance"] == 0.1 and fairness["four_fifths"] == 0.8
    for group in fairness["by_feature"][0]["groups"]:
        for metric in ("selection_rate", "accuracy", "tpr", "fpr", "mean_score", "observed_rate", "brier"):
            low, high = group["ci"][metric]
            assert low <= group[metric] <= high, (group["group"], metric)
    names = {g["name"] for g in fairness["by_feature"][0]["gaps"]}
    assert {"demographic_parity_difference", "equalized_odds_difference"} <= names
    assert fairness["by_feature"][0]["adverse_impact"]["reference_group"].startswith("gender=")
    assert "calibration" in at_035.card.plots()


# -- outcomes analysis ------------------------------------------------------------------------------------------
def test_calibration_and_benchmarks_on_the_same_rows(at_035, churn):
    from sklearn.metrics import roc_auc_score

    _, _, y_train, y_test = churn
    evaluation = at_035.card.to_dict()["evaluation"]
    calibration = evaluation["calibration"]
    assert sum(b["count"] for b in calibration["bins"]) == len(y_test) and len(calibration["bins"]) == 10
    ece = sum(b["count"] * abs(b["mean_score"] - b["observed_rate"]) for b in calibration["bins"]) / len(y_test)
    assert calibration["expected_calibration_error"] == pytest.approx(ece)
    benchmarks = {b["kind"]: b for b in evaluation["benchmarks"]}
    assert set(benchmarks) == {"dummy", "baseline"} and all(b["available"] for b in benchmarks.values())
    dummy = {m["name"]: m["value"] for m in benchmarks["dummy"]["metrics"]}
    prior = float(np.mean(np.asarray(y_train) == 1))
    assert dummy["roc_auc"] == 0.5 and dummy["brier"] == pytest.approx(np.mean((prior - np.asarray(y_test)) ** 2))
    model = _metrics(at_035.card)
    for bench in benchmarks.values():
        own = {m["name"]: m["value"] for m in bench["metrics"]}
        for diff in bench["differences"]:
            assert diff["value"] == pytest.approx(model[diff["name"]]["value"] - own[diff["name"]])
            assert diff["ci_low"] < diff["ci_high"]
    baseline = benchmarks["baseline"]
    assert "logistic regression" in baseline["name"] and 0.6 < {m["name"]: m["value"] for m in baseline["metrics"]}["roc_auc"] < 1
    verdict = at_035.card.to_html()
    verdict = verdict[verdict.index('id="verdict"'):verdict.index('id="details"')]
    assert "ROC AUC vs dummy" in verdict and "ROC AUC vs baseline (logistic regression)" in verdict
    assert roc_auc_score(y_test, np.full(len(y_test), prior)) == dummy["roc_auc"]


# -- leakage by row ---------------------------------------------------------------------------------------------
def test_half_the_evaluation_rows_seen_in_training_changes_the_label_and_is_refused(churn, churn_model):
    X_train, X_test, y_train, y_test = churn
    mixed_X, mixed_y = pd.concat([X_train.iloc[:100], X_test.iloc[:100]]), pd.concat([y_train.iloc[:100], y_test.iloc[:100]])
    sensitive = pd.Series(np.random.default_rng(2).choice(["a", "b"], 200), index=mixed_X.index, name="group")
    pkg = deploykit.package(churn_model, name="card-overlap", X_train=X_train, y_train=y_train, X_test=mixed_X,
                            y_test=mixed_y, sensitive_features=sensitive, explain=False, fast_path=False, verbose=False)
    view = pkg.card.to_dict()
    evaluation = view["data"]["evaluation"]
    assert (evaluation["overlap_rows"], evaluation["overlap_with_training"], evaluation["held_out"]) == (100, 0.5, False)
    assert evaluation["label"] == "evaluation data (50% of rows also in training, not held-out)" == view["evaluation"]["data"]
    for text in (json.dumps(view, ensure_ascii=False), pkg.card.to_html(), pkg.card.to_markdown()):
        assert "held-out data" not in text and "50% of rows also in training" in text
    assert {m["slice"] for m in view["model_card_toolkit"]["quantitative_analysis"]["performance_metrics"]
            if m["type"] == "accuracy" and m["slice"].startswith("evaluation")} == {evaluation["label"]}
    for profile in ("eu-ai-act-high-risk", "us-bank-mrm"):
        overlap = {f.field: f for f in pkg.card.errors(profile)}["evaluation.overlap"]
        assert overlap.problem == "100 of 200 evaluation rows (50.0%) are also training rows"
    assert "evaluation.overlap" in {f.field for f in pkg.card.validate("internal") if f.severity == "warning"}
    with pytest.raises(deploykit.CardValidationError, match="evaluation.overlap: 100 of 200") as info:
        deploykit.deploy(pkg, profile="eu-ai-act-high-risk", verbose=False)
    assert "evaluation.overlap" in {f.field for f in info.value.findings}


def test_any_overlap_is_a_warning_and_up_to_one_percent_is_still_held_out(churn):
    X_train, X_test = churn[0], churn[1]
    one = pd.concat([X_train.iloc[:1], X_test.iloc[:199]])
    facts = _data.overlap_facts(X_train, one)
    assert (facts["overlap_rows"], facts["held_out"], facts["label"]) == (1, True, "held-out data")
    three = _data.overlap_facts(X_train, pd.concat([X_train.iloc[:3], X_test.iloc[:197]]))
    assert (three["overlap_rows"], three["held_out"]) == (3, False)
    # the same values in another row order, and a changed value, are told apart by row hash
    assert _data.overlap_mask(X_train, X_train.iloc[::-1]).all()
    changed = X_train.iloc[:5].assign(tenure_months=X_train["tenure_months"].iloc[:5] + 1000)
    assert not _data.overlap_mask(X_train, changed).any()


# -- reproducibility --------------------------------------------------------------------------------------------
def test_the_same_fit_packaged_twice_gives_the_same_sha256(churn, churn_model):
    from deploykit.demo import churn_pipeline

    X_train, X_test, y_train, y_test = churn
    kwargs = dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, explain=False, fast_path=False, verbose=False)
    first = deploykit.package(churn_model, name="card-twice", **kwargs)
    second = deploykit.package(churn_model, name="card-twice", **kwargs)
    refit = churn_pipeline().set_params(model__n_estimators=30, model__max_depth=6).fit(X_train, y_train)
    third = deploykit.package(refit, name="card-twice", **kwargs)
    shas = {p.manifest["artifacts"]["model"]["sha256"] for p in (first, second, third)}
    assert len(shas) == 1 and hashlib.sha256((first.model_dir / "model.skops").read_bytes()).hexdigest() in shas
    assert first.card.model_sha256 == third.card.model_sha256
    reloaded = deploykit._runtime.artifacts.load_model(first.model_dir, first.manifest.model)
    assert (reloaded.predict_proba(X_test) == churn_model.predict_proba(X_test)).all()


def test_a_cloudpickle_artifact_is_deterministic_too(tmp_path, churn):
    from helpers.custom import ChargePerMonth
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from deploykit._runtime import artifacts

    X_train, _, y_train, _ = churn
    numeric = X_train[["tenure_months", "total_charges"]].fillna(0)
    model = make_pipeline(ChargePerMonth(), LogisticRegression(max_iter=500)).fit(numeric, y_train)
    shas = []
    for k in range(2):
        (tmp_path / str(k)).mkdir()
        shas.append(artifacts.dump_model(model, tmp_path / str(k), artifacts.CLOUDPICKLE).sha256)
    assert shas[0] == shas[1]


def test_the_card_of_the_same_inputs_is_byte_identical(at_035, churn, churn_model, gender):
    from deploykit._card._attach import plan
    from deploykit._card._build import TIMESTAMPED, CardInputs, build

    X_train, X_test, y_train, y_test = churn
    fields = plan({"decision_threshold": 0.35}, None, gender, X_test, X_test, y_test)

    reference = json.loads((at_035.model_dir / "monitor_reference.json").read_text())  # what the card describes
    asked = []

    def make() -> str:
        inputs = CardInputs(model=churn_model, manifest=Manifest.from_dict(at_035.manifest.to_dict()), model_dir=at_035.model_dir,
                            train=X_train, y_train=y_train, test=X_test, y_test=y_test,
                            reference=lambda top: asked.append(top) or reference, **fields)
        return json.dumps(build(inputs), indent=1, ensure_ascii=False)

    first, second = make(), make()
    assert first == second and asked == [reference["top_features"]] * 2
    packaged = json.loads((at_035.model_dir / "card.json").read_text())
    again = json.loads(first)
    for path in TIMESTAMPED:  # the only fields allowed to differ are time stamps
        *parents, leaf = path.split(".")
        for card in (packaged, again):
            node = card
            for part in parents:
                node = node[part]
            node.pop(leaf, None)
    assert again == packaged


def test_seeds_and_the_lock_are_in_the_card(at_035):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from deploykit._card._provenance import seeds

    md = at_035.card.to_dict()["model_details"]
    assert {"parameter": "model.random_state", "value": 0, "fixed": True} in md["seeds"]
    environment = md["environment"]
    assert environment["lock"] == at_035.manifest["lock"] and environment["requirements"] == at_035.manifest["requirements"]
    lock_file = at_035.model_dir / "requirements.lock"
    assert environment["lock_sha256"] == hashlib.sha256(lock_file.read_bytes()).hexdigest()
    assert any(re.match(r"scikit-learn==", line) for line in environment["lock"])
    loose = make_pipeline(StandardScaler(), RandomForestClassifier(random_state=None))
    assert seeds(loose) == [{"parameter": "randomforestclassifier.random_state", "value": None, "fixed": False}]


# -- monitoring and logging from structured data ---------------------------------------------------------------
def test_monitoring_and_logging_sections_fill_from_a_dict(at_035):
    from deploykit._card._operations import operations

    card = at_035.card.to_dict()
    card["deployment"]["operations"] = operations(monitoring={"drift": "PSI per column, daily", "alert": ["p95 > 200 ms"]},
                                                  logging={"retention": "13 months"}, source="monitoring 1")
    shown = deploykit.ModelCard(card)
    html, markdown = shown.to_html(), shown.to_markdown()
    assert "<b>drift:</b> PSI per column, daily" in html and "<b>alert:</b> p95 &gt; 200 ms" in html
    assert "retention: 13 months" in markdown


def test_a_card_made_before_the_review_workflow_still_renders():
    from pathlib import Path

    old = json.loads((Path(__file__).parent / "data" / "card-before-issue-16.json").read_text())
    card = deploykit.ModelCard(old)
    assert card.review["status"] == "not reviewed" and "Verdict" in card.to_html() and "## Verdict" in card.to_markdown()
    assert "not reviewed" in repr(card) and card.to_dict() == old


# -- printing ---------------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_the_first_page_prints_on_one_a4_page(at_035, tmp_path):
    require(__import__("shutil").which("chromium") is not None, "Chromium", "apt-get install -y chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    written = at_035.card.save(tmp_path / "card")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 688, "height": 1002})  # A4 less the card's @page margins, at 96 dpi
            page.goto(written["html"].resolve().as_uri())
            page.emulate_media(media="print")
            bottom = page.evaluate("document.querySelector('#verdict').getBoundingClientRect().bottom")
            breaks = page.evaluate("getComputedStyle(document.querySelector('#verdict')).breakAfter")
            pdf = page.pdf(format="A4", print_background=True)
        finally:
            browser.close()
    assert bottom <= 1002, f"the verdict is {bottom:.0f}px tall: it spills onto a second page"
    assert breaks == "page" and pdf.startswith(b"%PDF")
