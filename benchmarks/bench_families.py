"""Per-family serving benchmark (issue 15): every model family on deploykit's path, side by side with
BentoML (defaults, and adaptive batching) and the model's own in-process calls, in one run.

    python benchmarks/bench_families.py                          # all families; writes docs/benchmarks-families-latest.md
    python benchmarks/bench_families.py --families rf,lgbm-cat   # a subset
    python benchmarks/bench_families.py --quick --families logreg   # a smoke run: one 1-s run per case

For each family (``bench_serving_models.FAMILIES``): deploykit (packaged with its defaults: the compiled
path when the model compiles, else the plain path) at 1 row, concurrency 1 and 16, and ``/explain`` at
1 row, concurrency 1; BentoML with its defaults and with adaptive batching at 1 row, concurrency 1 and
16; in-process ``predict`` and explainer calls in the harness. Each of issue 15's targets is given PASS
or MISS, and a MISS its reason (bench_families_report.py). Load, servers and processes are those of the
serving benchmark (bench_serving_*.py, docs/benchmarks-serving.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_families_report as report  # noqa: E402
import bench_serving as serving  # noqa: E402
import bench_serving_models as models_mod  # noqa: E402
import bench_serving_procs as procs  # noqa: E402
import bench_serving_servers as servers  # noqa: E402

C1, C16 = ("predict", 1, 1), ("predict", 1, 16)
EXPLAIN = ("explain", 1, 1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/benchmarks-families-latest.md", help="where to write the markdown report")
    parser.add_argument("--families", default=",".join(models_mod.FAMILIES),
                        help=f"comma-separated subset of: {', '.join(models_mod.FAMILIES)}")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: one 1-s run per case, no warm-up")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 2; --quick 1)")
    parser.add_argument("--repeats", type=int, help="measured runs per case (default 3; --quick 1)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    args.budget_minutes = 10_000  # every case of every family runs: no time budget here
    return args


def specs(mixed: bool) -> dict[str, servers.Spec]:
    """deploykit and the two BentoML services; ``mixed``: the variants for text and missing values."""
    suffix = "_mixed" if mixed else ""
    return {
        "deploykit": servers.Spec("deploykit", "deploykit", "records", servers._deploykit({}),
                                  {"predict": "/predict", "explain": "/explain"}, deploykit=True),
        "bentoml": servers.Spec("bentoml", "BentoML defaults", "records", servers._bentoml(f"bentoml_default{suffix}", "records")),
        "bentoml-batching": servers.Spec("bentoml-batching", "BentoML adaptive batching", "arrays",
                                         servers._bentoml(f"bentoml_batching{suffix}", "arrays")),
    }


def floors(fitted: models_mod.Fitted, budget: float) -> dict:
    """The model's own calls in this process: predict (1 and 100 rows) and shap.TreeExplainer where it applies."""
    model, one, hundred = fitted.model, fitted.X_test.iloc[:1], fitted.X_test.iloc[:100]
    out = {"predict_1": models_mod.time_call(lambda: model.predict(one), budget_s=budget),
           "predict_100": models_mod.time_call(lambda: model.predict(hundred), budget_s=budget)}
    try:
        import shap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.TreeExplainer(model)
            explainer.shap_values(one)
            out["tree_explainer_1"] = models_mod.time_call(lambda: explainer.shap_values(one), budget_s=budget)
    except Exception as exc:  # pipelines, linear models, categorical splits TreeExplainer cannot read
        out["tree_explainer_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return out


def package_floors(package, fitted: models_mod.Fitted, budget: float) -> dict:
    """The package's own calls in this process: its compiled path on 1 row's validated columns, and its
    explainer on a 1-row frame: what a served request costs beyond the request path."""
    from deploykit._runtime.model import ModelRuntime

    runtime = ModelRuntime.load(package.model_dir)
    out = {}
    if runtime.fast is not None:
        columns = runtime.columns({"instances": fitted.rows(1)})
        out["compiled_1"] = models_mod.time_call(lambda: runtime.fast.run(columns), budget_s=budget)
    if runtime.manifest.get("explainer") is not None:
        frame = runtime.frame({"instances": fitted.rows(1)})
        out["package_explainer_1"] = {**models_mod.time_call(lambda: runtime.explain(frame), budget_s=budget),
                                      "algorithm": runtime.manifest["explainer"]["algorithm"]}
    return out


def probe(spec: servers.Spec, running: servers.Running, fitted: models_mod.Fitted) -> dict:
    """Path header and whether 1- and 100-row answers equal in-process predict (values: within 1e-6)."""
    import numpy as np

    out = {}
    for n in (1, 100):
        status, headers, body = procs.post(running.base_url + spec.routes["predict"], fitted.body(spec.body_kind, n))
        out[f"path_{n}"] = headers.get("x-deploykit-path") if spec.deploykit else None
        got = models_mod.predictions_of(spec.body_kind, json.loads(body)) if status == 200 else None
        expected = fitted.expected(n)
        if got is None or len(got) != len(expected):
            out[f"correct_{n}"] = False
        elif isinstance(expected[0], float):
            out[f"correct_{n}"] = bool(np.allclose(got, expected, rtol=1e-6, atol=1e-6))
        else:
            out[f"correct_{n}"] = got == expected
    out["correct"] = out["correct_1"] and out["correct_100"]
    return out


def run_family(run: serving.Run, ctx: servers.Context, fitted: models_mod.Fitted, kind: str) -> dict:
    entry = {"key": fitted.key, "label": models_mod.FAMILIES[fitted.key][0], "servers": {}}
    entry["floors"] = floors(fitted, run.cfg.floor_budget)
    dtypes = ctx.tmp / f"{fitted.key}.dtypes.json"
    dtypes.write_text(json.dumps(fitted.dtypes()))
    ctx.env["BENCH_DTYPES"] = str(dtypes)
    for key, spec in specs(kind in ("churn", "native")).items():
        cases = [C1, C16, EXPLAIN] if key == "deploykit" else [C1, C16]
        entry["servers"][key] = run_server(run, ctx, spec, fitted, cases, entry)
    return entry


def run_server(run, ctx, spec, fitted, cases, entry) -> dict:
    run.say(f"{fitted.key}: starting {spec.label}")
    out: dict = {"cases": {}, "error": None}
    try:
        running = spec.start(ctx, fitted)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        run.say(f"  FAILED: {out['error']}")
        return out
    try:
        out["cold_start_s"], out["info"] = running.cold_start_s, running.info
        time.sleep(run.cfg.settle)
        out["probe"] = None if spec.floor else probe(spec, running, fitted)
        run.say(f"  up in {running.cold_start_s:.2f} s, {out['probe']}")
        if spec.deploykit:
            package = ctx.packages[(fitted.key, f"bench-{fitted.key}")]
            out["fast_path"] = package.manifest["serving"].get("fast_path")
            out["explainer"] = package.manifest.get("explainer")
            entry["floors"].update(package_floors(package, fitted, run.cfg.floor_budget))
        for case in cases:
            if case[0] == "explain" and not out.get("explainer"):
                continue
            if case[0] == "explain":  # the first /explain loads SHAP and the model: not what is measured
                procs.post(running.base_url + spec.routes["explain"], fitted.body(spec.body_kind, 1), timeout=120)
            out["cases"][case] = serving.measure(run, spec, running, fitted, case)
    except Exception as exc:  # report it and go on
        out["error"] = f"failed while measured: {type(exc).__name__}: {exc}"
        run.say(f"  {out['error']}")
    finally:
        running.stop()
        time.sleep(0.5)
    return out


def fixed_cost(run: serving.Run, ctx: servers.Context, fitted: models_mod.Fitted) -> float | None:
    """p50 of an empty route mounted in BentoML as deploykit's app is (1 row, c1): what any request costs."""
    spec = servers.catalogue()["bentoml-asgi-empty"]
    out = run_server(run, ctx, spec, fitted, [C1], {"floors": {}})
    case = out["cases"].get(C1)
    return case["p50_ms"] if case else None


def main(argv=None) -> int:
    args = parse_args(argv)
    run = serving.Run(args)
    tmp = Path(tempfile.mkdtemp(prefix="deploykit-bench-families-"))
    env = serving.isolate(tmp)
    load_start = os.getloadavg()
    entries, data, fixed = [], {}, None
    try:
        ctx = servers.Context(tmp=tmp, env=env, mlflow_python=None)
        for key in args.families.split(","):
            kind = models_mod.FAMILIES[key][2]
            if kind not in data:
                data[kind] = models_mod.make_data(kind)
            run.say(f"{key}: fitting {models_mod.FAMILIES[key][1]}")
            fitted = models_mod.fit(key, data[kind])
            if fixed is None:
                fixed = fixed_cost(run, ctx, fitted)
            entries.append(run_family(run, ctx, fitted, kind))
    except KeyboardInterrupt:
        run.notes.append("interrupted: the report holds what ran before the interrupt")
    finally:
        procs.stop_all()
    meta = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *sys.argv[1:]]),
            "elapsed_s": run.elapsed, "machine": serving.machine(), "versions": serving.versions(),
            "settings": f"{run.cfg.warmup} s warm-up, then {run.cfg.repeats} × {run.cfg.duration} s runs per case; medians",
            "load": f"{load_start[0]:.2f}", "quick": args.quick, "notes": run.notes, "fixed_ms": fixed}
    text = report.render(meta, entries)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    run.say(f"report written to {args.out}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
