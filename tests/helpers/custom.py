"""Estimators defined outside any installed package: deploykit must carry their code by value."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin


class ChargePerMonth(BaseEstimator, TransformerMixin):
    """Adds charges per month of tenure (a feature built from two columns)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = X.copy()
        X["charge_per_month"] = X["total_charges"].fillna(0) / (X["tenure_months"] + 1)
        return X


class CoinFlip(BaseEstimator, ClassifierMixin):
    """A classifier whose answers change on every call: the parity check must catch it."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        p = np.random.default_rng().random(len(X))
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]
