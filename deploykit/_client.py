"""Talking to a served model over its HTTP contract, and the results it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._schema import as_frame, records
from .exceptions import DeploymentError, RequestError


def instances(X: Any) -> list[dict]:
    """Request rows from a DataFrame, a 2-D array, one dict, or a list of dicts."""
    if isinstance(X, dict):
        return [X]
    if isinstance(X, list) and all(isinstance(row, dict) for row in X):
        return X
    return records(as_frame(X, what="X"))


class ServiceClient:
    """A small HTTP client for one deployment's URL."""

    def __init__(self, url: str, *, timeout: float = 60.0, token: str | None = None) -> None:
        import httpx

        self.url, self.token = url, token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def post(self, path: str, X: Any) -> dict:
        import httpx

        try:
            response = self._http.post(path, json={"instances": instances(X)})
        except httpx.HTTPError as exc:
            raise DeploymentError(f"could not reach {self.url}{path}: {exc}; is the deployment running?") from None
        body = _json(response)
        if 400 <= response.status_code < 500:
            raise RequestError(body.get("error", response.text), status=response.status_code, details=body.get("details"))
        if response.status_code != 200:
            raise DeploymentError(f"{self.url}{path} answered {response.status_code}: {body.get('error', response.text)}")
        return body

    def get(self, path: str) -> Any:
        import httpx

        try:
            response = self._http.get(path)
        except httpx.HTTPError as exc:
            raise DeploymentError(f"could not reach {self.url}{path}: {exc}") from None
        if response.status_code != 200:
            raise DeploymentError(f"{self.url}{path} answered {response.status_code}")
        return _json(response) if "json" in response.headers.get("content-type", "") else response.text

    def ok(self, path: str, timeout: float = 2.0) -> bool:
        import httpx

        try:
            return self._http.get(path, timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()


def _json(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {"error": response.text[:200]}
    return body if isinstance(body, dict) else {"value": body}


@dataclass
class Explanation:
    """SHAP values per row on the original columns, as served at ``/explain``."""

    feature_names: list[str]
    values: np.ndarray
    base_values: np.ndarray
    outputs: np.ndarray
    output: str
    explainer: str
    classes: list | None = None

    @classmethod
    def from_json(cls, body: dict) -> Explanation:
        return cls(
            feature_names=body["feature_names"],
            values=np.asarray(body["values"], dtype="float64"),
            base_values=np.asarray(body["base_values"], dtype="float64"),
            outputs=np.asarray(body["outputs"], dtype="float64"),
            output=body["output"],
            explainer=body.get("explainer", ""),
            classes=body.get("classes"),
        )

    @property
    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.values, columns=self.feature_names)

    def top(self, k: int = 5, row: int = 0) -> list[tuple[str, float]]:
        """The ``k`` largest contributions of one row, as (column, SHAP value), biggest first."""
        order = np.argsort(-np.abs(self.values[row]))[:k]
        return [(self.feature_names[i], float(self.values[row, i])) for i in order]

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        first = ", ".join(f"{name} {value:+.3f}" for name, value in self.top(3))
        return f"<Explanation {len(self)} rows · {self.output} · row 0: base {self.base_values[0]:.3f}, {first} …>"

    def _repr_html_(self) -> str:
        from ._display import explanation_html

        return explanation_html(self)
