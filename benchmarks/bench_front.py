"""The front's overhead (issue 9): the same deployed version hit directly and through its front, in one run.

::

    python benchmarks/bench_front.py                  # about 3 minutes; prints a Markdown report
    python benchmarks/bench_front.py --workers 2      # versions with two server workers
    python benchmarks/bench_front.py --shadow         # the cost of a shadow on the live path (issue 10)
    python benchmarks/bench_front.py --settings       # capture, API keys, audit through the front (11, 12)
    python benchmarks/bench_front.py --settings --seconds 2 --rounds 1   # its smoke run, about 2.5 minutes

The model is the serving benchmark's RandomForest (100 trees, 20 features; ``bench_serving_models``),
packaged with deploykit's defaults and deployed on the local target. Each measurement alternates
direct / front / front / direct (ABBA), so a drift of the machine during the run falls on both sides;
the ratio of the means is reported. Load is 1-row ``/predict`` from wrk (``bench_serving_load``). The
front's own CPU per request is read from /proc around the c=16 runs through it.

Budget (issue 9): at most 10% less 1-row c=16 throughput, at most 0.3 ms more c=1 p50.

``--shadow`` measures the live version's 1-row c=16 p50 through the front with no candidate, and with a
shadow that is stopped (nothing listens), failing (every answer a 500) or slow (500 ms an answer),
each alternated with the no-shadow case; and with a real second version as the shadow, which competes
with the live one for the same two cores. Budget (issue 10): a slow, failing or stopped shadow adds at
most 1 ms to the live p50 at c=16.

``--settings`` switches one deployment's front between runs (``PUT /_deploykit/settings``) and measures
capture on, API keys on, audit on, keys + audit, and all three, each alternated ABBA with the plain front
(all three off): 1-row c=16 throughput, p50 and p99, c=1 p50, and the front's CPU per request. Budgets:
capture and keys + audit each at most 10% of c=16 throughput (issues 11, 12). How: ``bench_front_settings``.
Note that the default mode measures the front as ``deploy()`` leaves it (capture 1.0, audit on).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_serving_load as load  # noqa: E402
import bench_serving_models as models  # noqa: E402

THROUGHPUT_BUDGET = 0.10
LATENCY_BUDGET_MS = 0.3
SHADOW_BUDGET_MS = 1.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _abba(direct: str, front: str, body: bytes, concurrency: int, seconds: int, rounds: int, front_pid: int) -> dict:
    runs = {"direct": [], "front": []}
    cpu = {"seconds": 0.0, "requests": 0}
    for _ in range(rounds):
        for which in ("direct", "front", "front", "direct"):
            url = (direct if which == "direct" else front) + "/predict"
            before = _cpu_seconds(front_pid)
            result = load.run(url, body, concurrency, seconds)
            if which == "front":
                cpu["seconds"] += _cpu_seconds(front_pid) - before
                cpu["requests"] += result["requests"]
            if result["errors"]:
                raise RuntimeError(f"{which} run at c={concurrency} had errors: {result}")
            runs[which].append(result)
    return {"runs": runs, "front_cpu_us": 1e6 * cpu["seconds"] / max(cpu["requests"], 1)}


def _mean(runs: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="length of each load run")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds per measurement")
    parser.add_argument("--workers", type=int, default=1, help="server workers of the version")
    parser.add_argument("--shadow", action="store_true", help="measure a shadow's cost on the live path instead")
    parser.add_argument("--settings", action="store_true",
                        help="measure capture, API keys and audit through the front instead (issues 11, 12)")
    options = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-front-")
    os.environ.update(DEPLOYKIT_HOME=f"{home}/deploykit", BENTOML_HOME=f"{home}/bentoml", BENTOML_DO_NOT_TRACK="true")
    import deploykit

    fitted = models.fit("rf", models.make_data())
    dep = deploykit.deploy(fitted.model, name="bench-front", X_train=fitted.X_train, y_train=fitted.y_train,
                           X_test=fitted.X_test, y_test=fitted.y_test, workers=options.workers, verbose=False)
    if options.shadow:
        try:
            shadow_report(dep, fitted, options)
        finally:
            dep.stop()
        return
    if options.settings:
        settings_report(dep, fitted, options)
        return
    try:
        body = fitted.body("records", 1)
        direct, front = dep.handle.direct_url, dep.url
        front_pid = dep.front.details["pid"]
        for url in (direct, front):  # warm both paths
            load.run(url + "/predict", body, 16, 3)
        c16 = _abba(direct, front, body, 16, options.seconds, options.rounds, front_pid)
        c1 = _abba(direct, front, body, 1, options.seconds, options.rounds, front_pid)
    finally:
        dep.stop()
    report(c16, c1, options, dep.package.manifest.serving.fast_path.get("enabled"))


def report(c16: dict, c1: dict, options, compiled: bool) -> None:
    rps = {k: _mean(v, "rps") for k, v in c16["runs"].items()}
    p50 = {k: _mean(v, "p50_ms") for k, v in c1["runs"].items()}
    p99 = {k: _mean(v, "p99_ms") for k, v in c16["runs"].items()}
    loss = 1 - rps["front"] / rps["direct"]
    added = p50["front"] - p50["direct"]
    print(f"### The front's overhead ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {load.generator()}, "
          f"version with {options.workers} worker(s), {'compiled' if compiled else 'plain'} path)\n")
    print("| measure | direct to the version | through the front | change | budget | met |")
    print("|---|---:|---:|---:|---|---|")
    print(f"| 1-row c=16 throughput | {rps['direct']:,.0f} req/s | {rps['front']:,.0f} req/s | {-loss:+.1%} | "
          f">= -{THROUGHPUT_BUDGET:.0%} | {'yes' if loss <= THROUGHPUT_BUDGET else '**no**'} |")
    print(f"| 1-row c=16 p99 | {p99['direct']:.2f} ms | {p99['front']:.2f} ms | {p99['front'] - p99['direct']:+.2f} ms | | |")
    print(f"| 1-row c=1 p50 | {p50['direct']:.3f} ms | {p50['front']:.3f} ms | {added:+.3f} ms | "
          f"<= +{LATENCY_BUDGET_MS} ms | {'yes' if added <= LATENCY_BUDGET_MS else '**no**'} |")
    print(f"\nThe front's own CPU: {c16['front_cpu_us']:.0f} µs per request at c=16, {c1['front_cpu_us']:.0f} µs at c=1. "
          f"Each figure is the mean of {2 * options.rounds} runs of {options.seconds} s per side, ABBA order.")



# -- the cost of a shadow (issue 10) ---------------------------------------------------------------------
def _candidate_server(kind: str) -> tuple[str, object]:
    """An upstream that fails fast (``failing``), answers after 500 ms (``slow``), or a port nothing
    listens on (``stopped``); returns its URL and a handle to stop it."""
    import asyncio
    import threading

    from deploykit._targets.local import free_port

    port = free_port()
    if kind == "stopped":
        return f"http://127.0.0.1:{port}", None
    status, delay = (b"500 Internal Server Error", 0.0) if kind == "failing" else (b"200 OK", 0.5)
    loop = asyncio.new_event_loop()

    async def answer(reader, writer) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = loop.run_until_complete(asyncio.start_server(answer, "127.0.0.1", port))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", (loop, server)


def _shadow_routes(dep, candidate_url: str | None, instance: str = "bench-shadow") -> None:
    live = dep.front.routes()["live"]
    table = {"format": 1, "name": dep.name, "live": live, "candidate": None, "strategy": {"kind": "replace"}}
    if candidate_url:
        table["candidate"] = {"version": "shadow", "upstreams": [candidate_url], "instance": instance}
        table["strategy"] = {"kind": "shadow", "sample": 1.0}
    dep.front.set_routes(table)


def shadow_report(dep, fitted, options) -> None:
    import deploykit

    body = fitted.body("records", 1)
    url = dep.url + "/predict"
    load.run(url, body, 16, 3)
    rows = []
    for kind in ("stopped", "failing", "slow"):
        candidate, handle = _candidate_server(kind)
        p50 = {"none": [], kind: []}
        for which in ("none", kind, kind, "none") * options.rounds:
            _shadow_routes(dep, candidate if which == kind else None)
            result = load.run(url, body, 16, options.seconds)
            if result["errors"]:
                raise RuntimeError(f"live requests failed with a {kind} shadow: {result}")
            p50[which].append(result["p50_ms"])
        dropped = dep.front.call("GET", "experiment")["mirror_dropped"]
        rows.append((kind, statistics.fmean(p50["none"]), statistics.fmean(p50[kind]), dropped))
        _shadow_routes(dep, None)
        if handle is not None:
            loop, server = handle
            loop.call_soon_threadsafe(server.close)
    # a real second version as the shadow: it needs the same CPU as the live one
    second = deploykit.deploy(dep.package, name=dep.name, strategy="shadow", verbose=False)
    real = {"none": [], "version": []}
    for which in ("version", "none", "none", "version") * options.rounds:
        if which == "none":
            routes = dep.front.routes()
            dep.front.set_routes({**routes, "strategy": {"kind": "shadow", "sample": 0.0}})
        else:
            routes = dep.front.routes()
            dep.front.set_routes({**routes, "strategy": {"kind": "shadow", "sample": 1.0}})
        result = load.run(url, body, 16, options.seconds)
        real[which].append(result["p50_ms"])
    deploykit.rollback(second.name, verbose=False)
    print(f"### The cost of a shadow on the live path ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{load.generator()})\n")
    print("| shadow | live p50 without (ms) | live p50 with (ms) | added | dropped copies | budget | met |")
    print("|---|---:|---:|---:|---:|---|---|")
    for kind, without, with_shadow, dropped in rows:
        added = with_shadow - without
        print(f"| {kind} | {without:.2f} | {with_shadow:.2f} | {added:+.2f} ms | {dropped:,} | <= +{SHADOW_BUDGET_MS} ms | "
              f"{'yes' if added <= SHADOW_BUDGET_MS else '**no**'} |")
    without, with_shadow = statistics.fmean(real["none"]), statistics.fmean(real["version"])
    print(f"| a second version of the same model (healthy, sample 1.0) | {without:.2f} | {with_shadow:.2f} | "
          f"{with_shadow - without:+.2f} ms | | (shares the 2 cores) | |")
    print(f"\n1-row /predict at c=16 for {options.seconds} s per run, {2 * options.rounds} runs per side, "
          "alternated; mean of the runs' p50.")


# -- the cost of capture, API keys and audit (issues 11 and 12) -------------------------------------------
def settings_report(dep, fitted, options) -> None:
    import bench_front_settings as bench

    try:
        results = bench.measure(dep, fitted, options)
    finally:
        dep.stop()
    bench.report(results, options, dep.package.manifest.serving.fast_path.get("enabled"))


if __name__ == "__main__":
    main()
