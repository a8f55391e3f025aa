"""Make the example model card for the churn demo: docs/examples/churn-card.{html,md,json}, its plots, and
a picture of its first page as printed (churn-card-first-page.png).

Run from the repository root:  python docs/examples/make_churn_card.py

It trains the demo's churn model, packages it with the card fields a data scientist would fill (a
decision threshold of 0.35 among them), checks the card against the EU AI Act high-risk profile, records
an example review decision by someone other than the author, signed with that reviewer's own Ed25519
key (its public half is saved as churn-card-reviewer.pub: `deploykit keys trust` it to count the
decision on your machine), and saves every format beside this script. The package itself goes to a temporary DEPLOYKIT_HOME, so your own ~/.deploykit is left alone.
The picture needs Playwright for Python and Debian's Chromium (/usr/bin/chromium); without them it is
skipped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

CARD = {
    "overview": "Scores how likely a telecom customer is to cancel within 90 days, to prioritise retention offers.",
    "description": "A random forest over tenure, charges, support calls, contract, internet service and payment "
                   "method, with median imputation, scaling and one-hot encoding in one scikit-learn Pipeline.",
    "owners": [{"name": "Retention analytics team", "contact": "retention-ml@example.com"}],
    "contact": "retention-ml@example.com",
    "license": "proprietary",
    "intended_use": ["rank existing residential customers by churn risk for the monthly retention campaign"],
    "users": ["retention campaign managers", "customer-care team leads"],
    "out_of_scope": ["credit, pricing, collections or employment decisions",
                     "business customers and new sign-ups (under one month of tenure)"],
    "decision_role": "advisory",
    "human_oversight": "A campaign manager reviews each month's top-500 list and can remove anyone before offers "
                       "are sent; no offer is withheld because of a low score.",
    "contest": "Customers can ask customer care why they received (or did not receive) an offer; care staff see the "
               "top reasons from /explain and can add the customer to the campaign manually.",
    "provenance": "Synthetic customer table made by deploykit.demo.make_churn (2,000 rows, seed 0): 1,600 rows "
                  "train the model, 1,600 onwards are held out. Gender is a synthetic attribute drawn at random.",
    "time_range": "Synthetic data; a real deployment would state the months the snapshot covers.",
    "deidentification": "No personal data: every row is generated.",
    "limitations": ["Trained on synthetic data: the numbers show what the card reports, not real-world accuracy.",
                    "The decision threshold of 0.35 trades precision for recall of churners: a missed churner costs "
                    "more than an unneeded offer. The service's /predict still cuts at 0.5; the campaign tool applies "
                    "0.35 to /predict_proba."],
    "risks": [{"name": "Offers concentrate on month-to-month customers, who may feel targeted",
               "mitigation": "campaign budget is capped per contract type"},
              {"name": "Scores drift as prices change", "mitigation": "monthly AUC check on labelled outcomes"}],
    "tradeoffs": ["A random forest was chosen over a boosted model for stable SHAP explanations at similar AUC."],
    "monitoring": "Prometheus dashboards on /metrics; the analytics team recomputes AUC monthly on the outcomes of "
                  "the previous campaign and retrains when it drops below 0.75.",
    "logging": "The gateway keeps request logs (customer id, score, top reasons) for 13 months.",
    "access_control": "Only the campaign tool's service account can call the API, through the internal gateway "
                      "with mutual TLS.",
    "validated_by": "Model risk team (A. Reviewer), example review",
    "author": "Retention data scientist <churn-ds@example.com>",
    "positive_class": 1,
    "decision_threshold": 0.35,
}
REVIEW = {"reviewer": "A. Reviewer <model-risk@example.com>", "role": "model risk (example)", "decision": "conditions",
          "notes": "Example decision: approved for the synthetic demo only; re-validate on real outcomes before any use."}


def main() -> None:
    os.environ["DEPLOYKIT_HOME"] = tempfile.mkdtemp(prefix="deploykit-card-example-")
    os.environ.setdefault("BENTOML_HOME", os.path.join(os.environ["DEPLOYKIT_HOME"], "bentoml"))
    import deploykit
    from deploykit.demo import churn_pipeline, make_churn

    X, y = make_churn()
    X_train, X_test, y_train, y_test = X[:1600], X[1600:], y[:1600], y[1600:]
    model = churn_pipeline().fit(X_train, y_train)
    # Sensitive attributes are often not model inputs: pass them aligned with X_test.
    rng = np.random.default_rng(42)
    sensitive = pd.DataFrame({
        "gender": rng.choice(["female", "male", "non-binary"], len(X_test), p=[0.48, 0.48, 0.04]),
        "age_group": np.where(X_test["age"] >= 65, "65+", "under 65"),
    }, index=X_test.index)
    pkg = deploykit.package(model, name="churn", X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                            sensitive_features=sensitive, card=CARD, profile="eu-ai-act-high-risk")
    for path in HERE.glob("churn-card*"):
        path.unlink()
    card = pkg.card
    card.approve(**REVIEW, key=reviewer_key(HERE / "churn-card-reviewer.pub"))
    for finding in card.validate("eu-ai-act-high-risk"):
        print(f"  {finding.severity}: {finding.field}: {finding.message}")
    written = card.save(HERE, stem="churn-card")
    first_page(written["html"], HERE / "churn-card-first-page.png")
    print(repr(card))
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("churn-card*"))), "in", HERE)
    return written


def reviewer_key(public: Path) -> Path:
    """The reviewer's own key (not the packaging machine's), trusted here; its public half saved to ``public``."""
    from deploykit._security.signing import keys_dir, load_or_create_key, public_key, trust

    private = keys_dir() / "example-reviewer.key"
    load_or_create_key(private)
    public.write_text(public_key(private))
    trust(public, name="example reviewer")
    return private


def first_page(html: Path, png: Path) -> None:
    """The card's first page as the browser prints it on A4 (print styles, 182 × 265 mm of content at 96 dpi)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("no screenshot: pip install playwright (it drives the system's Chromium, nothing is downloaded)")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 688, "height": 1002}, device_scale_factor=1.5)
            page.goto(html.resolve().as_uri())
            page.emulate_media(media="print")
            # the page breaks after the verdict: below it, the printed first page is blank
            bottom = page.evaluate("document.querySelector('#verdict').getBoundingClientRect().bottom")
            page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": 688, "height": min(1002, bottom + 12)})
        finally:
            browser.close()


if __name__ == "__main__":
    main()
