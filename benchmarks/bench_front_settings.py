"""The cost of the front's settings on the live path (issues 11 and 12): ``bench_front.py --settings``.

One deployment of the benchmark model; its front is switched between runs with the admin API
(``PUT /_deploykit/settings``, no redeploy). Each configuration is alternated with the plain front
(capture off, API keys off, audit off) in ABBA order: plain, with, with, plain, per round. In each slot a
c=16 run and then a c=1 run of 1-row ``/predict`` are made with wrk. Every run, the plain ones included,
sends the same ``Authorization: Bearer`` header, so only what the front does with it differs.

The key has the ``predict`` scope and a rate limit (10^6 req/s, burst 2*10^6) far above what two cores
can serve: the token bucket is checked on every request, as with a real key, but never throttles.
Capture records every request (fraction 1.0); audit fsyncs on the front's default policy ("interval").
After each run the script waits until the front's CPU falls idle (the capture writer's backlog, the
audit fsync) before reading the front's CPU from /proc, so that work is charged to the run that caused it.

Budgets: capture at most 10% of 1-row c=16 throughput (issue 11); auth plus audit at most 10% (issue 12).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import bench_serving_load as load

BUDGET = 0.10
PLAIN = {"capture": {"fraction": 0.0, "retention": None}, "auth": False, "audit": False}
CAPTURE_ON = {"fraction": 1.0, "retention": None}
# name -> (settings over the plain front, the issue whose throughput budget applies)
CONFIGS = {
    "capture on": ({"capture": CAPTURE_ON}, "issue 11"),
    "auth on": ({"auth": True}, None),
    "audit on": ({"audit": True}, None),
    "auth + audit": ({"auth": True, "audit": True}, "issue 12"),
    "all three": ({"capture": CAPTURE_ON, "auth": True, "audit": True}, None),
}
KEY_RATE, KEY_BURST = 1e6, 2 * 10**6
IDLE_CPU_S = 0.004  # front CPU over IDLE_WINDOW_S below which the front counts as idle
IDLE_WINDOW_S = 0.2


# -- load with an API key ------------------------------------------------------------------------------
def run(url: str, body: bytes, concurrency: int, seconds: int, token: str) -> dict:
    """A wrk run like ``bench_serving_load.run``, sending ``Authorization: Bearer <token>``; a refused
    request (401, 403, 429) counts as a ``status`` error."""
    import tempfile

    text = body.decode()
    if "]==]" in text:
        raise ValueError("the request body cannot be embedded in a Lua long string")
    with tempfile.TemporaryDirectory(prefix="bench-front-settings-") as tmp:
        script = Path(tmp) / "post.lua"
        header = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        script.write_text(header + load._LUA % {"body": text, "mark": load._MARK})
        command = ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds}s",
                   f"--timeout={load.TIMEOUT_S}s", "--latency", "-s", str(script), url]
        result = load._subprocess(command, seconds)
    result["errors"] = sum(result.get(k, 0) for k in load.ERROR_KINDS)
    result["rps"] = result["requests"] / result["seconds"] if result["seconds"] else 0.0
    return result


# -- the front -----------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, timeout: float = 20.0) -> float:
    """Wait until the front's CPU falls idle (its background threads done); return its CPU seconds."""
    deadline, last = time.monotonic() + timeout, cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(IDLE_WINDOW_S)
        now = cpu_seconds(pid)
        if now - last < IDLE_CPU_S:
            return now
        last = now
    return last


def capture_dropped(dep, token: str) -> int:
    """The front's ``deploykit_capture_dropped_total`` (the current capture writer's drops)."""
    import httpx

    text = httpx.get(dep.url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    for line in text.splitlines():
        if line.startswith("deploykit_capture_dropped_total"):
            return int(float(line.split()[-1]))
    return 0


def check_enforced(dep) -> None:
    """With auth on, a request without a key must be refused: else the auth runs measure nothing."""
    import httpx

    status = httpx.post(dep.url + "/predict", content=b"{}", timeout=10).status_code
    if status != 401:
        raise RuntimeError(f"auth is on but a request without a key got {status}, not 401")


def evidence(state_dir: Path) -> dict:
    """Rows in the capture database and request records in the audit log: proof the settings acted."""
    from deploykit._front import capture
    from deploykit._front.audit import LOG_FILE

    rows = 0
    if capture.database(state_dir).exists():
        con = sqlite3.connect(f"file:{capture.database(state_dir)}?mode=ro", uri=True)
        rows = con.execute("SELECT count(*) FROM captures").fetchone()[0]
        con.close()
    log = state_dir / LOG_FILE
    records = sum(1 for line in log.open("rb") if b'"kind":"request"' in line) if log.exists() else 0
    return {"captured": rows, "audited": records}


# -- the measurement -----------------------------------------------------------------------------------
def measure(dep, fitted, options) -> dict:
    """ABBA runs of each configuration against the plain front; returns the runs per configuration."""
    import deploykit

    if not shutil.which("wrk"):
        raise RuntimeError("--settings needs wrk to send the API key header: apt-get install -y wrk")
    token = deploykit.keys.create(dep.name, "predict", rate=KEY_RATE, burst=KEY_BURST, label="bench_front").token
    reader = deploykit.keys.client_token(dep.name, make=True)  # every scope: reads /metrics with auth on
    body, url, pid = fitted.body("records", 1), dep.url + "/predict", dep.front.details["pid"]
    dep.front.call("PUT", "settings", PLAIN)
    run(url, body, 16, 3, token)  # warm the path
    results = {}
    for name, (changes, _) in CONFIGS.items():
        settings = {**PLAIN, **changes}
        runs = {side: {16: [], 1: []} for side in ("plain", "with")}
        cpu = {side: {16: [0.0, 0], 1: [0.0, 0]} for side in ("plain", "with")}
        dropped, current = 0, None
        for side in ("plain", "with", "with", "plain") * options.rounds:
            if side != current:
                dep.front.call("PUT", "settings", settings if side == "with" else PLAIN)
                if side == "with" and settings["auth"]:
                    check_enforced(dep)
                current = side
            before_drops = capture_dropped(dep, reader) if side == "with" else 0
            for concurrency in (16, 1):
                before = settle(pid)
                result = run(url, body, concurrency, options.seconds, token)
                spent = settle(pid) - before
                if result["errors"]:
                    raise RuntimeError(f"{name}, {side} side, c={concurrency}: the run had errors: {result}")
                runs[side][concurrency].append(result)
                cpu[side][concurrency][0] += spent
                cpu[side][concurrency][1] += result["requests"]
            if side == "with":
                dropped += capture_dropped(dep, reader) - before_drops
        results[name] = {"runs": runs, "dropped": dropped,
                         "cpu_us": {side: {c: 1e6 * s / max(n, 1) for c, (s, n) in per.items()}
                                    for side, per in cpu.items()}}
    dep.front.call("PUT", "settings", PLAIN)
    return {"configs": results, "evidence": evidence(_state_dir(dep))}


def _state_dir(dep) -> Path:
    from deploykit import _paths

    return _paths.deployment_dir(dep.name)


def _mean(runs: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in runs)


def report(measured: dict, options, compiled: bool) -> None:
    results = measured["configs"]
    print(f"### The cost of capture, API keys and the audit trail through the front ({time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} cores, {load.generator()}, version with {options.workers} worker(s), "
          f"{'compiled' if compiled else 'plain'} path)\n")
    print("| configuration | c=16 req/s (plain → with) | throughput | c=16 p50 ms | c=16 p99 ms | c=1 p50 ms | "
          "front CPU µs/req c=16 | front CPU µs/req c=1 | budget | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, result in results.items():
        runs, cpu = result["runs"], result["cpu_us"]
        rps = {side: _mean(runs[side][16], "rps") for side in runs}
        change = rps["with"] / rps["plain"] - 1
        issue = CONFIGS[name][1]
        budget, met = "", ""
        if issue:
            budget = f">= -{BUDGET:.0%} ({issue})"
            met = "PASS" if -change <= BUDGET else "**MISS**"

        def pair(concurrency: int, key: str, digits: int = 2) -> str:
            plain, with_ = (_mean(runs[side][concurrency], key) for side in ("plain", "with"))
            return f"{plain:.{digits}f} → {with_:.{digits}f}"

        print(f"| {name} | {rps['plain']:,.0f} → {rps['with']:,.0f} | {change:+.1%} | {pair(16, 'p50_ms')} | "
              f"{pair(16, 'p99_ms')} | {pair(1, 'p50_ms', 3)} | {cpu['plain'][16]:.0f} → {cpu['with'][16]:.0f} | "
              f"{cpu['plain'][1]:.0f} → {cpu['with'][1]:.0f} | {budget} | {met} |")
    seen = measured["evidence"]
    drops = {name: r["dropped"] for name, r in results.items() if "capture" in CONFIGS[name][0]}
    print(f"\nPlain: capture off, API keys off, audit off. Each pair is the mean of {2 * options.rounds} runs of "
          f"{options.seconds} s per side, ABBA order, settings switched with `PUT /_deploykit/settings` on one "
          "deployment. Every run sends the same `Authorization` header (a `predict` key, rate limit "
          f"{KEY_RATE:.0e}/s: checked, never throttling). Capture fraction 1.0; audit fsync on the front's "
          "default (interval). The front's CPU is read from /proc once its background threads fall idle after "
          "each run, so the capture writer's and the audit's deferred work is included.")
    print(f"\nThe settings acted: {seen['captured']:,} rows captured, {seen['audited']:,} requests audited; "
          f"capture drops (queue full, sampled but not written): "
          + ", ".join(f"{name} {n:,}" for name, n in drops.items()) + ".")
