"""schemathesis against a live service's own OpenAPI document, on both serving paths (issue 13).

The two services answer at least 5,000 generated requests together (2,000 or more each), with a fixed seed, under the checks
not_a_server_error, response_schema_conformance, status_code_conformance and negative_data_rejection;
none may fail. The packages take ``max_batch=20`` so that the boundary cases (a full batch, one row too
many) stay cheap: the contract checked is the same at any batch size.
"""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

import deploykit
from tests.conftest import require

pytestmark = pytest.mark.serve

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,negative_data_rejection"
EXAMPLES = {"onnx": 1000, "sklearn": 1000}  # per operation
# 413 is how this API refuses a list longer than maxItems (too large, like a body over its limit);
# schemathesis's default list of rejections for negative data lacks it. Every 5xx stays a failure.
CONFIG = """[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
"""


@pytest.fixture(scope="module")
def services(churn):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from deploykit.demo import churn_pipeline

    X, y = make_classification(600, 6, n_informative=4, random_state=1)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    X["x5"] = (X["x5"] * 10).round().astype("int64")
    forest = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X[:400], y[:400])
    fast = deploykit.package(forest, name="fuzz-onnx", X_train=X[:400], y_train=pd.Series(y[:400]), X_test=X[400:],
                             y_test=pd.Series(y[400:]), max_batch=20, verbose=False)
    X_train, X_test, y_train, y_test = churn
    pipeline = churn_pipeline().set_params(model__n_estimators=10, model__max_depth=5).fit(X_train, y_train)
    plain = deploykit.package(pipeline, name="fuzz-sklearn", X_train=X_train, y_train=y_train, X_test=X_test,
                              y_test=y_test, max_batch=20, fast_path=False, verbose=False)
    deployments = {"onnx": deploykit.deploy(fast, verbose=False), "sklearn": deploykit.deploy(plain, verbose=False)}
    yield deployments
    for dep in deployments.values():
        dep.stop()


def _schemathesis(url: str, examples: int, report: Path, config: Path) -> subprocess.Popen:
    # One worker thread: with more, Python 3.11's ast.parse (which Hypothesis calls to describe its
    # strategies) sometimes fails with "AST constructor recursion depth mismatch" (CPython gh-106905).
    # The two services are fuzzed by two processes at once instead.
    command = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
               "--config-file", str(config), "run", f"{url}/docs.json", "--url", url, "-c", CHECKS, "--seed", "42",
               "--generation-database", "none", "-n", str(examples), "-w", "1", "--no-shrink", "--no-color",
               "--report", "json", "--report-json-path", str(report)]
    # in the report's folder: schemathesis keeps a cache (.schemathesis/) in its working directory
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=report.parent)


def test_schemathesis_finds_nothing_on_either_serving_path(services, tmp_path):
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        require(False, "schemathesis", "pip install 'deploykit[test]'")
    sample = {"instances": services["onnx"].package.sample_rows()[:1]}
    assert httpx.post(services["onnx"].url + "/predict", json=sample).headers["x-deploykit-path"] == "onnx"
    sample = {"instances": services["sklearn"].package.sample_rows()[:1]}
    assert httpx.post(services["sklearn"].url + "/predict", json=sample).headers["x-deploykit-path"] == "sklearn"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    runs = {path: _schemathesis(dep.url, EXAMPLES[path], tmp_path / f"{path}.json", config) for path, dep in services.items()}
    outputs = {path: run.communicate(timeout=900)[0] for path, run in runs.items()}
    generated = {}
    for path, run in runs.items():
        report = json.loads((tmp_path / f"{path}.json").read_text())
        summary = outputs[path][-3000:]
        assert run.returncode == 0 and report["failures"] == [] and report["errors"] == [], summary
        assert report["test_cases"]["with_failures"] == 0 and report["operations"]["errored"] == 0, summary
        assert report["seed"] == 42 and report["operations"]["tested"] >= 10
        generated[path] = report["test_cases"]["generated"]
    assert min(generated.values()) >= 2000 and sum(generated.values()) >= 5000, generated
