"""Batch scoring: every row accounted for, predictions equal to the model's, Dask equal to local,
an interrupted run resumed to the same output, CSV and folders of parts, SHAP columns, the card's record."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import deploykit
from deploykit._runtime.model import ModelRuntime

CATEGORIES = ["basic", "plus", "pro"]
BAD_ROWS = 100


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "usage": np.round(rng.gamma(2.0, 10.0, n), 3),
        "tenure": rng.integers(0, 72, n),
        "plan": rng.choice(CATEGORIES, n),
    })


@pytest.fixture(scope="module")
def fast_package():
    """A logistic regression: its predict costs microseconds per row, so the tests measure deploykit."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = _frame(3000, 0)
    y = ((X["usage"] > 20) ^ (X["plan"] == "pro")).astype(int)
    model = Pipeline([("pre", ColumnTransformer([("num", StandardScaler(), ["usage", "tenure"]),
                                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])),
                      ("model", LogisticRegression())]).fit(X[:2000], y[:2000])
    pkg = deploykit.package(model, name="batchfast", X_train=X[:2000], y_train=y[:2000], X_test=X[2000:],
                            y_test=y[2000:], fast_path=False, verbose=False)
    return pkg, model


@pytest.fixture(scope="module")
def million(tmp_path_factory):
    """1,000,000 rows of Parquet (several row groups) with 100 bad rows of three kinds."""
    frame = _frame(1_000_000, 1)
    bad = np.sort(np.random.default_rng(2).choice(len(frame), BAD_ROWS, replace=False))
    usage = frame["usage"].to_numpy().copy()
    usage[bad[:30]] = np.inf                               # not a finite number
    plan = frame["plan"].to_numpy(dtype=object).copy()
    plan[bad[30:70]] = "enterprise"                        # an unseen category
    tenure = pa.array(frame["tenure"], mask=np.isin(np.arange(len(frame)), bad[70:]))  # nulls in an int column
    table = pa.table({"usage": usage, "tenure": tenure, "plan": plan.astype(str)})
    path = tmp_path_factory.mktemp("million") / "in.parquet"
    pq.write_table(table, path, row_group_size=300_000)
    return path, frame, bad


def _accounted(result, output: pd.DataFrame, rejects: pd.DataFrame, n: int) -> None:
    assert result.rows == n == result.scored + result.rejected_rows
    scored, rejected = set(output["row"]), set(rejects["row"])
    assert len(scored) == len(output) and not scored & rejected
    assert scored | rejected == set(range(n))


@pytest.fixture(scope="module")
def million_local(fast_package, million):
    """The local engine's run over the million rows (the Dask test compares with it)."""
    out = million[0].with_name("local.parquet")
    return deploykit.batch(fast_package[0], million[0], out, chunk_rows=250_000, progress=False), out


def test_a_million_rows_with_100_bad_ones_are_all_accounted_for(fast_package, million, million_local):
    pkg, model = fast_package
    source, frame, bad = million
    result, out = million_local
    output, rejects = pd.read_parquet(out), pd.read_parquet(out.with_name("local.rejects.parquet"))
    _accounted(result, output, rejects, len(frame))
    assert sorted(set(rejects["row"])) == bad.tolist() and result.rejected_rows == BAD_ROWS
    problems = dict(zip(rejects["row"], zip(rejects["column"], rejects["problem"])))
    assert problems[bad[0]][0] == "usage" and "finite" in problems[bad[0]][1]
    assert problems[bad[30]][0] == "plan" and "unseen category 'enterprise'" in problems[bad[30]][1]
    assert problems[bad[70]][0] == "tenure" and "null is not allowed" in problems[bad[70]][1]
    good = frame.drop(index=bad)
    assert output["row"].tolist() == good.index.tolist()
    np.testing.assert_array_equal(output["prediction"].to_numpy(), model.predict(good))
    assert output.columns.tolist() == ["usage", "tenure", "plan", "row", "prediction"]


def test_dask_gives_the_same_result_and_loads_the_package_once_per_worker(fast_package, million, million_local, tmp_path):
    from distributed import Client, LocalCluster

    from deploykit._batch_dask import _loads

    pkg, _ = fast_package
    source, frame, _ = million
    local, local_out = million_local
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        result = deploykit.batch(pkg, source, tmp_path / "dask.parquet", engine="dask", scheduler=client,
                                 chunk_rows=250_000, progress=False)
        small = tmp_path / "small.parquet"
        pq.write_table(pq.read_table(source).slice(0, 1000), small)
        deploykit.batch(pkg, small, tmp_path / "small-out.parquet", engine="dask", scheduler=client, progress=False)
        plugin = "deploykit-batch-" + pkg.manifest["artifacts"]["model"]["sha256"][:16]
        assert client.run(_loads, plugin) == {address: 1 for address in client.scheduler_info()["workers"]}
    assert result.engine == "dask" and (result.rows, result.scored) == (local.rows, local.scored)
    assert pq.read_table(tmp_path / "dask.parquet").equals(pq.read_table(local_out))
    assert pq.read_table(tmp_path / "dask.rejects.parquet").equals(pq.read_table(local_out.with_name("local.rejects.parquet")))


def test_an_interrupted_run_resumes_to_the_same_output(fast_package, tmp_path):
    pkg, _ = fast_package
    source = tmp_path / "in.parquet"
    _frame(200_000, 3).assign(plan=lambda f: f["plan"].where(f.index % 997 != 0, "gold")).to_parquet(source)
    reference = deploykit.batch(pkg, source, tmp_path / "reference.parquet", chunk_rows=10_000, workers=1, progress=False)
    out = tmp_path / "out.parquet"
    state = out.with_name(f".{out.name}.deploykit-batch")
    proc = subprocess.Popen([sys.executable, "-m", "deploykit._cli", "batch", str(pkg.path), str(source), str(out),
                             "--chunk-rows", "10000", "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(state.glob("done-*.json"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # the hardest interruption: no cleanup at all
    proc.wait()
    finished = len(list(state.glob("done-*.json")))
    assert 3 <= finished < 20 and not out.exists()
    result = deploykit.batch(pkg, source, out, chunk_rows=10_000, workers=2, progress=False)  # resumed by two processes
    assert result.resumed_chunks >= finished and result.chunks == 20
    assert (result.rows, result.scored, result.rejected_rows) == (reference.rows, reference.scored, reference.rejected_rows)
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "reference.parquet"))
    assert pq.read_table(tmp_path / "out.rejects.parquet").equals(pq.read_table(tmp_path / "reference.rejects.parquet"))
    assert not state.exists()


def test_worker_processes_give_the_same_output(fast_package, tmp_path):
    pkg, _ = fast_package
    source = tmp_path / "in.parquet"
    _frame(40_000, 12).assign(tenure=lambda f: f["tenure"].where(f.index % 1000 != 5, -1.5)).to_parquet(source)
    one = deploykit.batch(pkg, source, tmp_path / "one.parquet", chunk_rows=5_000, workers=1, progress=False)
    two = deploykit.batch(pkg, source, tmp_path / "two.parquet", chunk_rows=5_000, workers=2, progress=False)
    assert (two.rows, two.scored, two.rejected_rows) == (one.rows, one.scored, one.rejected_rows) == (40_000, 39_960, 40)
    assert pq.read_table(tmp_path / "two.parquet").equals(pq.read_table(tmp_path / "one.parquet"))
    assert pq.read_table(tmp_path / "two.rejects.parquet").equals(pq.read_table(tmp_path / "one.rejects.parquet"))


def test_csv_in_and_out_keeps_extra_columns_and_reports_bad_cells(fast_package, tmp_path):
    pkg, model = fast_package
    frame = _frame(500, 4)
    frame.insert(0, "customer_id", [f"c{i:04d}" for i in range(len(frame))])
    text = frame.astype(str)
    text.loc[3, "usage"] = "lots"       # not a number
    text.loc[8, "tenure"] = ""          # missing
    text.loc[9, "tenure"] = "2.5"       # not an integer
    text.to_csv(tmp_path / "in.csv", index=False)
    result = deploykit.batch(pkg, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=128, progress=False)
    output = pd.read_csv(tmp_path / "out.csv", dtype={"customer_id": str})
    rejects = pd.read_csv(tmp_path / "out.rejects.csv")
    _accounted(result, output, rejects, len(frame))
    assert rejects[["row", "column"]].values.tolist() == [[3, "usage"], [8, "tenure"], [9, "tenure"]]
    assert "expected a number, got 'lots'" in rejects["problem"][0]
    good = frame.drop(index=[3, 8, 9])
    assert output["customer_id"].tolist() == good["customer_id"].tolist()
    np.testing.assert_array_equal(output["prediction"], model.predict(good.drop(columns="customer_id")))


def test_folders_of_parquet_parts_in_and_out(fast_package, tmp_path):
    pkg, model = fast_package
    frames = [_frame(700, seed) for seed in (5, 6, 7)]
    (tmp_path / "in").mkdir()
    for i, part in enumerate(frames):
        part.to_parquet(tmp_path / "in" / f"part-{i}.parquet")
    result = deploykit.batch(pkg, tmp_path / "in", tmp_path / "out", chunk_rows=500, progress=False)
    output = pd.read_parquet(tmp_path / "out")
    assert result.chunks == 5 and sorted(p.name for p in (tmp_path / "out").iterdir())[0] == "part-00000.parquet"
    everything = pd.concat(frames, ignore_index=True)
    assert result.scored == len(output) == len(everything) and result.rejected_rows == 0
    np.testing.assert_array_equal(output.sort_values("row")["prediction"], model.predict(everything))


def test_values_the_validator_cannot_read_are_rejected_not_fatal(fast_package, tmp_path):
    pkg, _ = fast_package
    table = pa.table({"usage": [1.5, 2.5, 3.5], "tenure": [1, 2, 3], "plan": [["basic"], ["pro", "plus"], []]})
    pq.write_table(table, tmp_path / "nested.parquet")
    result = deploykit.batch(pkg, tmp_path / "nested.parquet", tmp_path / "out.parquet", progress=False)
    rejects = pd.read_parquet(tmp_path / "out.rejects.parquet")
    assert (result.scored, result.rejected_rows) == (0, 3) and sorted(set(rejects["row"])) == [0, 1, 2]
    assert pd.read_parquet(tmp_path / "out.parquet").empty


def test_explain_adds_the_services_shap_values(fast_package, tmp_path):
    pkg, _ = fast_package
    frame = _frame(60, 8)
    frame.to_parquet(tmp_path / "in.parquet")
    deploykit.batch(pkg, tmp_path / "in.parquet", tmp_path / "out.parquet", explain=True, progress=False)
    output = pd.read_parquet(tmp_path / "out.parquet")
    served = ModelRuntime.load(pkg.model_dir).explain(frame)
    shap = output[[f"shap_{c}" for c in served["feature_names"]]].to_numpy()
    np.testing.assert_allclose(shap, served["values"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(output["shap_base_value"], served["base_values"])


def test_the_card_records_batch_runs(fast_package, tmp_path):
    pkg, _ = fast_package
    _frame(50, 9).to_parquet(tmp_path / "in.parquet")
    deploykit.batch(pkg, tmp_path / "in.parquet", tmp_path / "card-run.parquet", progress=False)
    runs = pkg.card.to_dict()["changelog"]["batch_runs"]
    assert runs[-1]["destination"] == str(tmp_path / "card-run.parquet") and runs[-1]["rows"] == 50
    assert str(tmp_path / "in.parquet") in pkg.card.to_markdown(images=None) and "Batch runs" in pkg.card.to_html()


def test_the_cli_and_the_magic_run_the_same_batch(fast_package, tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from deploykit._cli import main

    pkg, _ = fast_package
    _frame(300, 10).to_parquet(tmp_path / "in.parquet")
    assert main(["batch", str(pkg.path), str(tmp_path / "in.parquet"), str(tmp_path / "cli.parquet"), "--chunk-rows", "100"]) == 0
    assert "300 rows → 300 scored" in capsys.readouterr().out
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "deploykit")
    shell.user_ns["pkg"] = pkg
    result = shell.run_line_magic("deploy", f"batch pkg {tmp_path / 'in.parquet'} {tmp_path / 'magic.parquet'} --chunk-rows 100")
    assert result.scored == 300
    assert pq.read_table(tmp_path / "magic.parquet").equals(pq.read_table(tmp_path / "cli.parquet"))


def test_errors_say_what_to_do(fast_package, tmp_path):
    pkg, _ = fast_package
    _frame(10, 11).drop(columns="plan").to_parquet(tmp_path / "lacking.parquet")
    with pytest.raises(deploykit.SchemaError, match="lacks column.*plan"):
        deploykit.batch(pkg, tmp_path / "lacking.parquet", tmp_path / "out.parquet", progress=False)
    with pytest.raises(deploykit.ConfigError, match="engine='spark'"):
        deploykit.batch(pkg, tmp_path / "lacking.parquet", tmp_path / "out.parquet", engine="spark")
    with pytest.raises(deploykit.ConfigError, match="does not exist"):
        deploykit.batch(pkg, tmp_path / "nothing.parquet", tmp_path / "out.parquet", progress=False)
    with pytest.raises(deploykit.ConfigError, match=r"\.txt: use a \.csv or \.parquet"):
        deploykit.batch(pkg, tmp_path / "lacking.parquet", tmp_path / "out.txt", progress=False)


def test_the_progress_bar_counts_rows_and_rejects():
    import io

    from deploykit._runtime.batch import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(1000, stream=stream, redraw=False)
    for _ in range(4):
        bar.advance(250, 1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("  batch [█████░") and "250/1,000 rows" in lines[0]
    assert lines[-1].count("1,000/1,000 rows") == 1 and "4 rejected" in lines[-1] and len(lines) == 4


def test_batch_workers_load_the_model_object_before_the_first_chunk(tmp_path):
    """A served worker with a compiled path loads the model object lazily (cold start); a batch worker needs
    it for every chunk, so it loads it up front rather than inside the first chunk's time."""
    from sklearn.linear_model import LogisticRegression

    from deploykit._runtime import batch as runner

    X = _frame(600, 3)[["usage", "tenure"]]
    y = (X["usage"] > 20).astype(int)
    pkg = deploykit.package(LogisticRegression().fit(X[:400], y[:400]), name="batchlazy", X_train=X[:400],
                            y_train=y[:400], X_test=X[400:], y_test=y[400:], verbose=False)
    assert pkg.manifest.serving.compiled, "the compiled path should serve this model, or the test proves nothing"
    served = ModelRuntime.load(pkg.model_dir)
    assert served._model is None  # as a served worker starts
    assert ModelRuntime.load(pkg.model_dir).loaded()._model is not None
    runner._load_in_worker(str(pkg.model_dir))
    assert runner._WORKER.pop("runtime")._model is not None
