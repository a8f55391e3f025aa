"""Models whose code lives in the notebook (``__main__``) deploy and serve correctly.

This is what breaks pickle-based tools ("Can't get attribute 'X' on <module '__main__'>"): the class
exists only in the kernel that defined it. Here it runs as real ``__main__`` code, in a notebook
executed by nbclient and in a script run with ``python -c``.
"""

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.serve

NOTEBOOK_CODE = [
    """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    import deploykit
    from deploykit.demo import make_churn

    class SpendRatio(BaseEstimator, TransformerMixin):
        "Defined in the notebook: only this kernel knows it."
        def fit(self, X, y=None):
            self.scale_ = float(X["monthly_charges"].mean())
            return self
        def transform(self, X):
            X = X[["tenure_months", "monthly_charges", "support_calls"]].copy()
            X["spend_ratio"] = X["monthly_charges"] / self.scale_
            return X
    """,
    """
    X, y = make_churn(n=500, seed=3)
    model = make_pipeline(SpendRatio(), FunctionTransformer(lambda X: np.log1p(X.clip(lower=0))),
                          RandomForestClassifier(n_estimators=20, random_state=0))
    model.fit(X[:400], y[:400])
    dep = deploykit.deploy(model, name="notebook-code", X_train=X[:400], y_train=y[:400], X_test=X[400:], verbose=False)
    """,
    """
    served = dep.predict(X[400:450]).tolist()
    local = model.predict(X[400:450]).tolist()
    proba_gap = float(np.abs(dep.predict_proba(X[400:450]) - model.predict_proba(X[400:450])).max())
    explanation = dep.explain(X[400:402])
    result = {"same": served == local, "proba_gap": proba_gap, "format": dep.package.manifest["artifacts"]["model"]["format"],
              "custom": dep.package.manifest["custom_code"], "features": explanation.feature_names,
              "additive": bool(np.allclose(explanation.base_values + explanation.values.sum(1), explanation.outputs, atol=1e-6))}
    dep.stop()
    print("RESULT " + __import__("json").dumps(result))
    """,
]


def _check(result: dict, columns: list[str]) -> None:
    assert result["same"] is True
    assert result["proba_gap"] <= 1e-9
    assert result["format"] == "cloudpickle" and result["custom"] == ["__main__"]
    assert result["features"] == columns and result["additive"] is True


def _result(text: str) -> dict:
    line = next(line for line in text.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_notebook_defined_transformer_in_a_real_kernel(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from deploykit.demo import make_churn

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(code)) for code in NOTEBOOK_CODE]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    _check(_result(out), list(make_churn(n=5)[0].columns))


def test_notebook_defined_transformer_in_a_python_c_script(tmp_path):
    from deploykit.demo import make_churn

    script = "\n".join(textwrap.dedent(code) for code in NOTEBOOK_CODE)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check(_result(proc.stdout), list(make_churn(n=5)[0].columns))
