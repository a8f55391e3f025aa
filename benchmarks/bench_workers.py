"""Two server workers against one (issue 15), alternated in one run so the machine's drift falls on both.

::

    python benchmarks/bench_workers.py                 # about 4 minutes; prints a Markdown report
    python benchmarks/bench_workers.py --seconds 2 --rounds 1   # a smoke run, about 2 minutes

The model is the serving benchmark's RandomForest (100 trees, 20 features; ``bench_serving_models``),
packaged once with deploykit's defaults and deployed twice on the local target: with ``workers=1`` and
with ``workers=2``. Both stay up; the idle one costs memory, not CPU. Each round measures, for 1-row and
100-row ``/predict`` at c=16, the 1-worker and the 2-worker deployment in the order A B B A, both
through the deployment's front (what clients reach) and past it (the version's own port, BentoML's
server alone). Means of the runs are reported, with their ratio.

Targets (issue 15): two workers at least 1.6× one; 1-row c=16 p99 under 20 ms and at least 3,000 req/s;
100-row c=16 p99 under 50 ms. The serving benchmark (``bench_serving.py``) has the same cases once each,
beside BentoML's; this one exists because a ratio of two cases minutes apart moved by half on this
machine between two runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_serving_load as load  # noqa: E402
import bench_serving_models as models  # noqa: E402

CASES = (1, 100)  # rows per request, all at c=16
CONCURRENCY = 16


def measure(urls: dict, bodies: dict, seconds: int, rounds: int) -> dict:
    """``urls[(workers, route)]`` -> base URL; returns runs[(workers, route, rows)] = list of load results."""
    runs: dict = {key + (rows,): [] for key in urls for rows in CASES}
    for _ in range(rounds):
        for rows in CASES:
            for route in ("front", "past"):
                for workers in (1, 2, 2, 1):
                    url = urls[(workers, route)] + "/predict"
                    runs[(workers, route, rows)].append(load.run(url, bodies[rows], CONCURRENCY, seconds))
    return runs


def _mean(results: list[dict], key: str) -> float:
    return statistics.fmean(r["requests"] / r["seconds"] if key == "rps" else r[key] for r in results)


def report(runs: dict, seconds: int, rounds: int) -> str:
    lines = [f"c={CONCURRENCY}, {rounds} round(s) of A B B A, {seconds} s a run; means over "
             f"{2 * rounds} runs per cell; load average {os.getloadavg()[0]:.2f} at the end", "",
             "| rows | route | 1 worker req/s | 2 workers req/s | ratio | 1 worker p99 ms | 2 workers p99 ms | errors |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for rows in CASES:
        for route, label in (("front", "through the front"), ("past", "past the front")):
            one, two = runs[(1, route, rows)], runs[(2, route, rows)]
            ratio = _mean(two, "rps") / _mean(one, "rps")
            errors = sum(r["errors"] for r in one + two)
            lines.append(f"| {rows} | {label} | {_mean(one, 'rps'):,.0f} | {_mean(two, 'rps'):,.0f} | {ratio:.2f}× | "
                         f"{_mean(one, 'p99_ms'):.1f} | {_mean(two, 'p99_ms'):.1f} | {errors} |")
            if rows == 1:
                verdicts.append((f"two workers ≥ 1.6× one, 1-row, {label}", f"{ratio:.2f}×", ratio >= 1.6))
                best = max(_mean(one, "rps"), _mean(two, "rps"))
                verdicts.append((f"≥ 3,000 req/s, 1-row, {label}", f"{best:,.0f} req/s (best of 1 and 2 workers)", best >= 3000))
            limit = 20 if rows == 1 else 50
            p99 = min(_mean(one, "p99_ms"), _mean(two, "p99_ms"))
            verdicts.append((f"{rows}-row p99 < {limit} ms, {label}", f"{p99:.1f} ms (best of 1 and 2 workers)", p99 < limit))
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'PASS' if ok else '**MISS**'} |" for t, m, ok in verdicts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="seconds per run (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="A B B A rounds (default 2)")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="deploykit-bench-workers-"))
    os.environ["DEPLOYKIT_HOME"], os.environ["BENTOML_HOME"] = str(folder / "home"), str(folder / "bento")
    import deploykit

    fitted = models.fit("rf", models.make_data())
    pkg = deploykit.package(fitted.model, name="benchworkers", X_train=fitted.X_train, y_train=fitted.y_train,
                            X_test=fitted.X_test, y_test=fitted.y_test, verbose=False)
    deployments = {}
    try:
        for workers in (1, 2):
            deployments[workers] = deploykit.deploy(pkg, name=f"benchworkers-{workers}", target="local",
                                                    workers=workers, verbose=False)
        urls = {}
        for workers, dep in deployments.items():
            urls[(workers, "front")], urls[(workers, "past")] = dep.url.rstrip("/"), dep.handle.upstream
        bodies = {rows: fitted.body("records", rows) for rows in CASES}
        for url in urls.values():  # warm every path: the first requests of a worker are slower
            load.run(url + "/predict", bodies[1], CONCURRENCY, 1)
        runs = measure(urls, bodies, args.seconds, args.rounds)
    finally:
        for dep in deployments.values():
            dep.stop()
    print(report(runs, args.seconds, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
