"""The demo: train a churn model, deploy it, show a prediction, its explanation and the endpoint.

Run it with ``deploykit demo`` (or ``python -m deploykit.demo``). ``make_churn`` is also what the
tutorials and tests train on: a synthetic, churn-like customer table with numeric, categorical and
missing values.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def make_churn(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A synthetic telecom churn table: features ``X`` and the 0/1 label ``y`` (1 = churned)."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.55, 0.25, 0.20])
    internet = rng.choice(["dsl", "fiber", "none"], n, p=[0.35, 0.45, 0.20])
    payment = rng.choice(["card", "bank", "check", "e-check"], n)
    tenure = rng.integers(0, 72, n)
    monthly = np.round(20 + 60 * (internet == "fiber") + 25 * (internet == "dsl") + rng.normal(0, 8, n), 2)
    total = np.round(monthly * tenure + rng.normal(0, 30, n), 2)
    total[rng.random(n) < 0.03] = np.nan  # new customers' totals are sometimes missing
    calls = rng.poisson(1.5, n)
    age = rng.integers(18, 85, n)
    logit = (
        -1.2
        + 1.6 * (contract == "month-to-month")
        - 1.0 * (contract == "two-year")
        + 0.7 * (internet == "fiber")
        + 0.5 * (payment == "e-check")
        - 0.04 * tenure
        + 0.35 * calls
        + 0.01 * (monthly - 60)
    )
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    X = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": calls,
            "age": age,
            "contract": contract,
            "internet": internet,
            "payment_method": payment,
        }
    )
    return X, pd.Series(y.astype(int), name="churned")


def churn_pipeline():
    """The tutorials' model: impute and scale numbers, one-hot categories, a random forest."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "age"]
    categorical = ["contract", "internet", "payment_method"]
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return Pipeline([("pre", pre), ("model", RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0))])


def choose_target(target: str = "auto") -> str:
    """``auto``: docker when an engine answers and a base image is usable, else a local process."""
    if target != "auto":
        return target
    from ._docker.engine import available

    if not available():
        print("no Docker engine answers: serving as a local process")
        return "local"
    from ._docker.base import check_base_image, resolve_base_image
    from .exceptions import ImageBuildError

    try:
        check_base_image(resolve_base_image())
    except ImageBuildError as exc:
        print(f"Docker is up but {exc}\nserving as a local process instead")
        return "local"
    return "docker"


def run(keep: bool = False, target: str = "auto") -> None:
    from ._deploy import deploy

    target = choose_target(target)
    print(f"deploykit demo: train → package → {'build an image → ' if target == 'docker' else ''}serve → predict → explain\n")
    X, y = make_churn()
    X_train, X_test, y_train, y_test = X[:1600], X[1600:], y[:1600], y[1600:]
    model = churn_pipeline().fit(X_train, y_train)
    print(f"trained {type(model[-1]).__name__} on {len(X_train)} customers "
          f"(held-out accuracy {np.mean(model.predict(X_test) == y_test):.3f})\n")
    dep = deploy(model, name="churn-demo", target=target,
                           X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    customer = X_test.iloc[[0]]
    print("\ncustomer:", customer.iloc[0].to_dict())
    proba = dep.predict_proba(customer)[0]
    print(f"prediction: churned={dep.predict(customer)[0]} (probability of churn {proba[1]:.3f})")
    explanation = dep.explain(customer)
    print(f"top SHAP contributions (to the churn probability, base {explanation.base_values[0]:.3f}):")
    for name, value in explanation.top(5):
        print(f"  {name:>16} {value:+.4f}")
    print(f"\nendpoint: {dep.url}  (POST /predict, /predict_proba, /explain; GET /schema; API docs at /)")
    if keep:
        print(f"left running ({target}); stop it with `deploykit stop {dep.name}`")
    else:
        dep.stop()
        print("stopped the demo service (run `deploykit demo --keep` to leave it running)")


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--target", default="auto", choices=["auto", "local", "docker"])
    options = parser.parse_args()
    run(keep=options.keep, target=options.target)
