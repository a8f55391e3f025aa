"""Serving-speed benchmark (issue 6): deploykit against the common ways of serving a scikit-learn model.

One command, under 10 minutes on a 2-core machine::

    pip install -r benchmarks/requirements.txt    # mlflow-skinny, for `mlflow models serve`
    apt-get install -y wrk                         # optional: without it an asyncio client makes the load
    python benchmarks/bench_serving.py             # writes docs/benchmarks-serving-latest.md
    python benchmarks/bench_serving.py --quick     # a smoke run, about 3 minutes

Side by side for a RandomForest and a HistGradientBoosting classifier: deploykit (each serving path its
``package`` offers), a hand-written FastAPI + uvicorn handler (1 and 2 workers), BentoML with its
defaults, BentoML with adaptive batching, ``mlflow models serve``, empty endpoints and the model's own
in-process calls. Load comes from wrk in a separate process on loopback; see docs/benchmarks-serving.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_serving_load as load  # noqa: E402
import bench_serving_models as models_mod  # noqa: E402
import bench_serving_procs as procs  # noqa: E402
import bench_serving_report as report  # noqa: E402
import bench_serving_servers as servers  # noqa: E402

PREDICT = [("predict", 1, 1), ("predict", 1, 16), ("predict", 100, 1), ("predict", 100, 16)]
C16_1 = [("predict", 1, 1), ("predict", 1, 16)]
SCALING = [("predict", 1, 16), ("predict", 100, 16)]  # issue 15: two workers against one, with and without the front

# (model, server, cases, cold starts) in the order they run. Servers whose cases the targets need come
# first, so a slow machine trims optional cases at the end rather than those; "cold starts" is how many
# times the server is started in all (the cold-start target compares medians), 1 for the others.
PLAN = [
    ("rf", "deploykit", PREDICT + [("explain", 1, 1), ("explain", 1, 16), ("explain", 100, 1)], 2),
    ("rf", "bentoml", [("predict", 1, 1), ("predict", 1, 16), ("predict", 100, 16)], 2),
    ("rf", "bentoml-batching", [("predict", 1, 1), ("predict", 1, 16), ("predict", 100, 16)], 1),
    ("rf", "deploykit-2w", SCALING, 1),
    ("rf", "deploykit-direct", SCALING, 1),
    ("rf", "deploykit-2w-direct", SCALING, 1),
    ("rf", "mlflow", [("predict", 1, 1), ("predict", 1, 16), ("predict", 100, 16)], 1),
    ("rf", "deploykit-other", [("predict", 1, 1), ("predict", 1, 16), ("predict", 100, 16), ("explain", 1, 1)], 1),
    ("rf", "fastapi", [("predict", 1, 1), ("predict", 1, 16), ("predict", 100, 16)], 1),
    ("rf", "fastapi-2w", [("predict", 1, 16), ("predict", 100, 16)], 1),
    ("rf", "fastapi-empty", C16_1, 1),
    ("rf", "bentoml-empty", C16_1, 1),
    ("rf", "bentoml-empty-2w", [("predict", 1, 16)], 1),
    ("rf", "bentoml-asgi-empty", [("predict", 1, 16)], 1),
    ("hgb", "deploykit", PREDICT + [("explain", 1, 1)], 1),
    ("hgb", "bentoml", C16_1, 1),
    ("hgb", "fastapi", C16_1, 1),
    ("hgb", "deploykit-other", C16_1, 1),
    ("hgb", "bentoml-batching", [("predict", 1, 16)], 1),
    ("hgb", "mlflow", [("predict", 1, 16)], 1),
]
# What the targets need: never skipped for time.
REQUIRED = {
    ("rf", "deploykit", ("predict", 1, 16)), ("rf", "deploykit", ("predict", 1, 1)),
    ("rf", "deploykit", ("explain", 1, 1)), ("rf", "bentoml-batching", ("predict", 1, 16)),
    ("rf", "mlflow", ("predict", 1, 16)), ("rf", "bentoml", ("predict", 1, 1)),
    *(("rf", server, case) for server in ("deploykit-2w", "deploykit-direct", "deploykit-2w-direct") for case in SCALING),
    ("rf", "deploykit", ("predict", 100, 16)),
}


@dataclass
class Settings:
    warmup: int
    repeats: int
    duration: int
    settle: float
    floor_budget: float
    cold_starts: bool  # start the cold-start target's servers as often as PLAN says, else once

    def case_cost(self) -> float:
        return self.warmup + self.repeats * self.duration + 0.1 * (self.repeats + 1)


FULL = Settings(warmup=1, repeats=3, duration=2, settle=1.0, floor_budget=1.0, cold_starts=True)
QUICK = Settings(warmup=0, repeats=1, duration=1, settle=0.5, floor_budget=0.2, cold_starts=False)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/benchmarks-serving-latest.md", help="where to write the markdown report")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: one 1-s run per case, no warm-up")
    parser.add_argument("--models", default="rf,hgb", help="comma-separated subset of: rf, hgb")
    parser.add_argument("--servers", default=None, help="comma-separated subset of server keys (default: all)")
    parser.add_argument("--budget-minutes", type=float, default=9.25,
                        help="skip optional cases that would end the run past this (the targets' cases always run)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 2; --quick 1)")
    parser.add_argument("--repeats", type=int, help="measured runs per case (default 3; --quick 1)")
    parser.add_argument("--mlflow-python", help="interpreter with mlflow installed (default: this one, if it has mlflow)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, packages) for inspection")
    return parser.parse_args(argv)


class Run:
    """One benchmark run: its clock, budget, scratch space and everything measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cfg = QUICK if args.quick else FULL
        if args.duration:
            self.cfg.duration = args.duration
        if args.repeats:
            self.cfg.repeats = args.repeats
        self.began = time.monotonic()
        self.budget = args.budget_minutes * 60
        self.results: list[dict] = []
        self.starts: dict[tuple, dict] = {}
        self.floors: dict[str, dict] = {}
        self.notes: list[str] = []
        self.start_ratios: list[float] = []  # observed start time / expected, to scale the budget's estimates

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def say(self, text: str) -> None:
        print(f"[{self.elapsed:6.1f} s] {text}", file=sys.stderr, flush=True)

    def fits(self, seconds: float) -> bool:
        return self.elapsed + seconds <= self.budget

    def start_cost(self, spec: servers.Spec, restart: bool = False) -> float:
        """The expected start-up time of ``spec``, scaled by how slow start-ups have been on this machine so far."""
        slowdown = max(1.0, report.median(self.start_ratios) or 1.0)
        return (spec.restart_cost_s if restart else spec.start_cost_s) * slowdown


def isolate(tmp: Path) -> dict:
    """Point deploykit and BentoML at scratch homes, for this process and every server it starts."""
    for key, sub in (("DEPLOYKIT_HOME", "deploykit-home"), ("BENTOML_HOME", "bentoml-home")):
        os.environ[key] = str(tmp / sub)
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    os.environ["PYTHONUNBUFFERED"] = "1"
    return dict(os.environ)


def mlflow_python(args: argparse.Namespace) -> str | None:
    if args.mlflow_python:
        return args.mlflow_python
    return sys.executable if importlib.util.find_spec("mlflow") else None


def resolve_plan(run: Run, specs: dict) -> list[tuple]:
    other = next((k for k, s in specs.items() if s.deploykit and s.variant), None)
    wanted_models = run.args.models.split(",")
    wanted_servers = run.args.servers.split(",") if run.args.servers else None
    plan = []
    for model, server, cases, cold in PLAN:
        if server == "deploykit-other":
            if other is None:
                continue
            server = other
        if model in wanted_models and (wanted_servers is None or server in wanted_servers):
            plan.append((model, server, cases, (cold if run.cfg.cold_starts else 1) - 1))
    return plan


# -- one server --------------------------------------------------------------------------------------
def run_server(run: Run, ctx: servers.Context, spec: servers.Spec, fitted, cases: list, cold_repeats: int) -> None:
    key = (fitted.key, spec.key)
    required = [c for c in cases if (fitted.key, spec.key, c) in REQUIRED]
    if _same_as_default(run, spec, fitted.key):
        for case in cases:
            _skip(run, fitted.key, spec.key, case, "deploykit's default already served this model on its plain path "
                  "(fast path not enabled for it), which is what this variant would measure")
        return
    if not required and not run.fits(run.start_cost(spec) + run.cfg.case_cost()):
        for case in cases:
            _skip(run, fitted.key, spec.key, case, "time budget")
        return
    run.say(f"{fitted.key}: starting {spec.label}")
    entry = run.starts.setdefault(key, {"cold_start_s": [], "idle": [], "probe": None, "info": None, "error": None})
    began = time.monotonic()
    try:
        running = spec.start(ctx, fitted)
        run.start_ratios.append((time.monotonic() - began + run.cfg.settle + 1) / spec.start_cost_s)
    except Exception as exc:  # a server that cannot start is reported, not fatal
        entry["error"] = f"{type(exc).__name__}: {exc}"
        run.say(f"  FAILED: {entry['error'][:600]}")
        for case in cases:
            _skip(run, fitted.key, spec.key, case, "server failed to start")
        return
    try:
        _settled(run, running, entry)
        entry["info"], entry["probe"] = running.info, servers.probe(spec, running, fitted)
        run.say(f"  up in {running.cold_start_s:.2f} s, idle RSS {entry['idle'][-1]['rss_mib']:.0f} MiB, {entry['probe']}")
        for case in cases:
            if (fitted.key, spec.key, case) in REQUIRED or run.fits(run.cfg.case_cost()):
                run.results.append(measure(run, spec, running, fitted, case))
            else:
                _skip(run, fitted.key, spec.key, case, "time budget")
    except Exception as exc:  # report it and go on with the next server
        run.notes.append(f"{spec.label} ({fitted.key}) failed while measured: {type(exc).__name__}: {exc}")
        run.say(f"  FAILED while measured: {exc}")
    finally:
        running.stop()
    for _ in range(cold_repeats):
        if not run.fits(run.start_cost(spec, restart=True)):
            run.notes.append(f"{spec.label} ({fitted.key}): extra cold starts skipped for time")
            break
        try:
            again = spec.start(ctx, fitted)
        except Exception as exc:
            run.notes.append(f"{spec.label} ({fitted.key}): a restart failed: {type(exc).__name__}: {exc}")
            break
        try:
            _settled(run, again, entry)
        finally:
            again.stop()
        run.say(f"  restart: up in {again.cold_start_s:.2f} s, idle RSS {entry['idle'][-1]['rss_mib']:.0f} MiB")
    time.sleep(0.5)  # let the stopped server's last CPU and sockets go before the next one starts


def _same_as_default(run: Run, spec: servers.Spec, model: str) -> bool:
    """A variant that turns the fast path off measures nothing new when the default did not use it either."""
    default = run.starts.get((model, "deploykit"))
    turns_off = spec.variant and not any(bool(v) for v in spec.variant.values())
    return bool(turns_off and default and not default.get("error")
                and report.is_compiled(report.serving_path(default)) is False)


def _settled(run: Run, running: servers.Running, entry: dict) -> None:
    entry["cold_start_s"].append(running.cold_start_s)
    time.sleep(run.cfg.settle)
    entry["idle"].append(procs.tree_memory(running.pgid))


def _skip(run: Run, model: str, server: str, case: tuple, why: str) -> None:
    endpoint, rows, concurrency = case
    run.results.append({"model": model, "server": server, "endpoint": endpoint, "rows": rows,
                        "concurrency": concurrency, "skipped": why})


def measure(run: Run, spec: servers.Spec, running: servers.Running, fitted, case: tuple) -> dict:
    endpoint, rows, concurrency = case
    url = running.base_url + spec.routes[endpoint]
    body = fitted.body(spec.body_kind, rows)
    warm_errors = 0
    if run.cfg.warmup:
        warm_errors = load.run(url, body, concurrency, run.cfg.warmup)["errors"]
    runs = []
    with procs.MemorySampler(running.pgid) as memory:
        cpu, wall = procs.tree_cpu_seconds(running.pgid), time.monotonic()
        for _ in range(run.cfg.repeats):
            runs.append(load.run(url, body, concurrency, run.cfg.duration))
        cores = (procs.tree_cpu_seconds(running.pgid) - cpu) / (time.monotonic() - wall)
    errors = {k: sum(r.get(k, 0) for r in runs) for k in load.ERROR_KINDS}
    result = {
        "model": fitted.key, "server": spec.key, "endpoint": endpoint, "rows": rows, "concurrency": concurrency,
        "rps": report.median([r["rps"] for r in runs]), "p50_ms": report.median([r["p50_ms"] for r in runs]),
        "p99_ms": report.median([r["p99_ms"] for r in runs]), "max_ms": max((r["max_ms"] for r in runs if r["max_ms"] is not None), default=None),
        "requests": sum(r["requests"] for r in runs), "errors": sum(errors.values()),
        "error_detail": ", ".join(f"{k} {v}" for k, v in errors.items() if v), "warmup_errors": warm_errors,
        "rss_peak_mib": memory.peak, "cpu_cores": cores, "runs": runs,
    }
    run.say(f"  {report.case_label(*case)}: {report.fmt(result['rps'])} req/s, p50 {report.fmt(result['p50_ms'])} ms, "
            f"p99 {report.fmt(result['p99_ms'])} ms, errors {result['errors']}, CPU {cores:.2f} cores")
    return result


# -- the whole run -------------------------------------------------------------------------------------
def versions() -> str:
    names = ["deploykit", "bentoml", "scikit-learn", "pandas", "numpy", "shap", "fastapi", "uvicorn", "uvloop",
             "httptools", "mlflow-skinny", "mlflow"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    return f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"


def main(argv=None) -> int:
    args = parse_args(argv)
    run = Run(args)
    tmp = Path(tempfile.mkdtemp(prefix="deploykit-bench-serving-"))
    env = isolate(tmp)
    load_start = os.getloadavg()
    specs = servers.catalogue()
    keyword = servers.fast_path_keyword()
    try:
        run.say(f"scratch {tmp}; load generator: {load.generator()}")
        data = models_mod.make_data()
        fitted = {key: models_mod.fit(key, data) for key in args.models.split(",")}
        for key, f in fitted.items():
            run.say(f"{key}: in-process floors")
            run.floors[key] = models_mod.measure_floors(f, run.cfg.floor_budget)
        ctx = servers.Context(tmp=tmp, env=env, mlflow_python=mlflow_python(args))
        plan = resolve_plan(run, specs)
        estimate = sum(specs[s].start_cost_s + c * specs[s].restart_cost_s + len(cs) * run.cfg.case_cost()
                       for _, s, cs, c in plan)
        run.say(f"{len(plan)} server starts, {sum(len(cs) for _, _, cs, _ in plan)} cases: about {estimate / 60:.1f} min "
                f"on a quiet machine; optional cases are skipped past {args.budget_minutes:g} min")
        if any(server == "mlflow" for _, server, _, _ in plan):
            run.say("saving the models in MLflow's format")
            servers.save_mlflow_models(ctx, [fitted[m] for m in fitted])
        for model, server, cases, cold in plan:
            run_server(run, ctx, specs[server], fitted[model], cases, cold)
    except KeyboardInterrupt:
        run.notes.append("interrupted: the report holds what ran before the interrupt")
        run.say("interrupted: stopping servers, writing what was measured")
    finally:
        procs.stop_all()
    try:
        write_report(run, specs, keyword, load_start, {k: models_mod.MODELS[k] for k in run.floors})
    finally:
        if args.keep:
            run.say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def write_report(run: Run, specs: dict, keyword, load_start: tuple, models: dict) -> None:
    run.notes += _notes(run, keyword, load_start, specs)
    meta = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *sys.argv[1:]]),
        "elapsed_s": run.elapsed,
        "machine": machine(),
        "facts": {
            "models": "; ".join(f"{models_mod.MODELS[k]}: {models_mod.ESTIMATORS[k]}" for k in models)
            + f", fitted on {models_mod.TRAIN_ROWS} rows × {models_mod.FEATURES} numeric features (make_classification, seed 0)",
            "versions": versions(),
            "load generator": f"{load.generator()}, separate process, loopback; c1 one connection, c16 16 kept-alive connections on 2 threads",
            "per case": f"{run.cfg.warmup} s warm-up (discarded), then {run.cfg.repeats} × {run.cfg.duration} s runs; medians",
            "load average before the run": f"{load_start[0]:.2f} (1-minute; the machine's other work)",
            "deploykit path keyword": f"`{keyword[0]}` (default {keyword[1]!r}): both paths measured" if keyword
            else "none in deploykit.package's signature: one path measured",
        },
        "notes": run.notes,
    }
    text = report.render(meta, run.floors, run.starts, run.results, specs, models)
    print(text)
    out = Path(run.args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    run.say(f"report written to {out}")


def _notes(run: Run, keyword, load_start, specs) -> list[str]:
    notes = [
        "Request bodies: deploykit, FastAPI and BentoML defaults take `{\"instances\": [{\"f0\": ..., ...}]}` (rows as "
        "objects); BentoML adaptive batching takes `{\"instances\": [[...], ...]}` (rows as arrays: its batchable "
        "input is an np.ndarray, since 1.4.40's batching fails on DataFrame inputs); mlflow takes "
        "`{\"dataframe_records\": [...]}` at `/invocations`.",
        "Every server but deploykit loads the same pickled model; deploykit packages and loads it its own way.",
        "`labels = in-process` checks a 1-row and a 100-row answer against the model's own predict.",
        "Each server runs alone; the harness and wrk share the 2 cores with it, so a server's CPU below 2 cores "
        "at c16 means it could not use both (one worker, the GIL or a single event loop).",
    ]
    if load_start[0] > 0.5:
        notes.append(f"The machine was not quiet (load average {load_start[0]:.2f} before the run started); "
                     "absolute figures are noisy, ratios less so.")
    if run.args.quick:
        notes.append("--quick: one 1-s run per case without warm-up; for development only, not for the docs.")
    return notes


if __name__ == "__main__":
    sys.exit(main())
