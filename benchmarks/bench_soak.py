"""Soak benchmark (issue 13): a deploykit service under steady load with invalid requests mixed in.

    python benchmarks/bench_soak.py                    # 10 minutes of soak, about 13 minutes in all
    python benchmarks/bench_soak.py --seconds 60 --short 20   # a smoke run, about 2.5 minutes
    python benchmarks/bench_soak.py --json soak.json   # keep the figures

The RandomForest of the serving benchmark (100 trees, 20 features) is deployed with deploykit's
defaults. wrk (``apt-get install -y wrk``) measures the peak 1-row ``/predict`` throughput, then holds
80 % of it, with one request in ten invalid (an unseen column, a wrong type, a number out of range,
malformed JSON): first for a short run, then for the soak. The server's RSS (its whole process tree)
is sampled every few seconds. Passing means: no 5xx at all, the soak's p99 within 2x the short run's,
and an RSS slope after warm-up under 10 MiB per hour (a least-squares line through the samples).
Not run in CI: it takes minutes and wants a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_serving_load as load  # noqa: E402
import bench_serving_models as models  # noqa: E402
import bench_serving_procs as procs  # noqa: E402

CONCURRENCY = 16
TARGET_SHARE = 0.8  # of peak throughput
P99_RATIO, RSS_SLOPE_MIB_PER_HOUR = 2.0, 10.0


def bodies(fitted: models.Fitted) -> list[bytes]:
    """Nine valid 1-row bodies and one invalid, cycling through four kinds of invalid."""
    row = fitted.rows(1)[0]
    valid = json.dumps({"instances": [row]}).encode()
    invalid = [
        json.dumps({"instances": [{**row, "colour": "red"}]}).encode(),
        json.dumps({"instances": [{**row, "f3": "high"}]}).encode(),
        json.dumps({"instances": [{**row, "f5": 1e300}]}).encode(),
        b'{"instances": [{"f0": ',
    ]
    mix = []
    for bad in invalid:
        mix += [valid] * 9 + [bad]
    return mix


def slope_per_hour(samples: list[tuple[float, float]], warmup_s: float) -> float:
    """Least-squares slope of RSS over time after ``warmup_s``, in MiB per hour."""
    points = [(t, m) for t, m in samples if t >= warmup_s]
    if len(points) < 3:
        return float("nan")
    mean_t = sum(t for t, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    covariance = sum((t - mean_t) * (m - mean_m) for t, m in points)
    variance = sum((t - mean_t) ** 2 for t, _ in points)
    return covariance / variance * 3600 if variance else float("nan")


def calibrate(url: str, mix: list[bytes], target_rps: float, delay_ms: int = 0, tries: int = 6) -> int:
    """The per-connection pause (ms) at which wrk's closed loop runs near ``target_rps``: each try
    solves rps = connections / (latency + pause) with the latency it just saw (latency falls as the
    load does, so it takes a few)."""
    for _ in range(tries):
        probe = load.run_mix(url, mix, CONCURRENCY, 5, delay_ms)
        if not probe["rps"] or abs(probe["rps"] - target_rps) <= 0.04 * target_rps:
            break
        latency_ms = CONCURRENCY / probe["rps"] * 1e3 - delay_ms
        wanted = max(0, round(CONCURRENCY / target_rps * 1e3 - latency_ms))
        if wanted == delay_ms:
            wanted += 1 if probe["rps"] > target_rps else -1
        delay_ms = max(0, wanted)
    return delay_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="soak duration (default 600)")
    parser.add_argument("--short", type=int, default=60, help="the short run the soak's p99 is compared with (default 60)")
    parser.add_argument("--peak-seconds", type=int, default=15, help="the peak-throughput run (default 15)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    import deploykit

    fitted = models.fit("rf", models.make_data())
    dep = deploykit.deploy(fitted.model, name="soak", X_train=fitted.X_train, y_train=fitted.y_train,
                           X_test=fitted.X_test, y_test=fitted.y_test, verbose=False)
    try:
        url = dep.url + "/predict"
        valid = fitted.body("records", 1)
        peak = load.run(url, valid, CONCURRENCY, args.peak_seconds)
        target = TARGET_SHARE * peak["rps"]
        mix = bodies(fitted)
        delay_ms = calibrate(url, mix, target)
        short = load.run_mix(url, mix, CONCURRENCY, args.short, delay_ms)
        with procs.MemorySampler(dep.handle.pid, interval=max(1.0, args.seconds / 120)) as rss:
            soak = load.run_mix(url, mix, CONCURRENCY, args.seconds, delay_ms)
        warmup = min(120.0, args.seconds * 0.2)
        result = {
            "path": dep.package.manifest["serving"].get("fast_path", {}).get("enabled") and "onnx" or "sklearn",
            "peak_rps": round(peak["rps"], 1), "target_rps": round(target, 1), "delay_ms": delay_ms,
            "short": _summary(short), "soak": _summary(soak),
            "rss_mib": {"first": round(rss.samples[0][1], 1), "last": round(rss.samples[-1][1], 1),
                        "slope_mib_per_hour_after_warmup": round(slope_per_hour(rss.samples, warmup), 2),
                        "warmup_s": warmup, "samples": len(rss.samples)},
        }
    finally:
        dep.stop()
    result["verdict"] = {
        "no_5xx": result["short"]["status_5xx"] == 0 and result["soak"]["status_5xx"] == 0
                  and result["soak"]["errors"] == 0,
        "p99_within_2x": result["soak"]["p99_ms"] <= P99_RATIO * result["short"]["p99_ms"],
        "rss_slope_under_10_mib_per_hour": math.isfinite(result["rss_mib"]["slope_mib_per_hour_after_warmup"])
                                           and result["rss_mib"]["slope_mib_per_hour_after_warmup"] < RSS_SLOPE_MIB_PER_HOUR,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if all(result["verdict"].values()) else 1


def _summary(run: dict) -> dict:
    keys = ("requests", "rps", "status_5xx", "status_4xx", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    out = {k: run.get(k) for k in keys}
    out["rps"] = round(out["rps"], 1)
    out["invalid_share"] = round(run.get("status_4xx", 0) / run["requests"], 3) if run.get("requests") else None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
