"""Make the example model card for the churn demo: docs/examples/churn-card.{html,md,json} and its plots.

Run from the repository root:  python docs/examples/make_churn_card.py

It trains the demo's churn model, packages it with the card fields a data scientist would fill, checks
the card against the EU AI Act high-risk profile, and saves every format beside this script. The
package itself goes to a temporary DEPLOYKIT_HOME, so your own ~/.deploykit is left alone.
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
                    "Recall for churners is far below precision at the default 0.5 threshold; lower it if missed "
                    "churners cost more than unneeded offers."],
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
}


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
    card = pkg.card
    for finding in card.validate("eu-ai-act-high-risk"):
        print(f"  {finding.severity}: {finding.field}: {finding.message}")
    for path in HERE.glob("churn-card*"):
        path.unlink()
    written = card.save(HERE, stem="churn-card")
    print(repr(card))
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("churn-card*"))), "in", HERE)
    return written


if __name__ == "__main__":
    main()
