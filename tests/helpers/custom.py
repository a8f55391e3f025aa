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


class FailsAbove(BaseEstimator, ClassifierMixin):
    """A forest that raises on rows whose ``column`` exceeds ``limit``: a candidate that errors on some traffic."""

    def __init__(self, column: str = "age", limit: float = 70):
        self.column, self.limit = column, limit

    def fit(self, X, y):
        from sklearn.ensemble import RandomForestClassifier

        self.forest_ = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(X, y)
        self.classes_ = self.forest_.classes_
        self.feature_names_in_ = self.forest_.feature_names_in_
        self.n_features_in_ = self.forest_.n_features_in_
        return self

    def _check(self, X):
        if (X[self.column] > self.limit).any():
            raise ValueError(f"{self.column} above {self.limit}: this model cannot score it")

    def predict_proba(self, X):
        self._check(X)
        return self.forest_.predict_proba(X)

    def predict(self, X):
        self._check(X)
        return self.forest_.predict(X)
