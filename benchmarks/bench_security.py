"""Microbenchmark (issue 12): the CPU cost per request of the front's API key check and audit append.

The issue's target is that auth plus audit cost at most 10% of 1-row, concurrency-16 throughput. The
end-to-end figure needs the front (it is measured through it, by bench_serving); this script measures
the two calls the front makes per request, in one process, on real files::

    python benchmarks/bench_security.py                # about a minute
    python benchmarks/bench_security.py --quick        # a smoke run, a few seconds

It reports microseconds of CPU per call (``time.process_time``, so waiting on a busy machine does not
count) and wall time, for: ``Authenticator.check`` with a valid key (rate limit on), an audit append
under each fsync policy, and the pair as the front makes it. The share column relates the pair to the
per-request CPU of deploykit's measured 1-row c=16 throughput (``--baseline-rps``, one core).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REQUEST = b'{"instances": [{"tenure_months": 12, "monthly_charges": 70.5, "total_charges": 846.0, "support_calls": 2, ' \
          b'"age": 41, "contract": "month-to-month", "internet": "fiber", "payment_method": "card"}]}'
RESPONSE = b'{"predictions":[1],"model":{"name":"churn","version":"3"}}'


def measure(call, n: int) -> tuple[float, float]:
    """(CPU µs per call, wall µs per call) over ``n`` calls, after a warm-up."""
    for _ in range(min(1000, n // 10)):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        call()
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations: a smoke run")
    parser.add_argument("--baseline-rps", type=float, default=1402.0,
                        help="1-row c=16 req/s of deploykit without auth/audit (default: docs/benchmarks.md)")
    args = parser.parse_args()
    n = 5_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-security-") as tmp:
        os.environ["DEPLOYKIT_HOME"] = str(Path(tmp) / "home")
        rows = run(Path(tmp), n)
    budget = 1e6 / args.baseline_rps
    print(f"# auth + audit microbenchmark ({n} calls each; Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})\n")
    print(f"| call | CPU µs/call | wall µs/call | share of {budget:.0f} µs (1 core at {args.baseline_rps:g} req/s) |")
    print("|---|---:|---:|---:|")
    for name, (cpu, wall) in rows.items():
        print(f"| {name} | {cpu:.1f} | {wall:.1f} | {cpu / budget:.1%} |")


def run(folder: Path, n: int) -> dict:
    from deploykit._front.audit import AuditLog
    from deploykit._front.auth import Authenticator
    from deploykit._security import audit, keys

    token = keys.create("bench", "predict", rate=1e9, burst=10**9).token
    front = Authenticator(folder / "home" / "deployments" / "bench", "bench")
    headers = [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json"),
               (b"authorization", f"Bearer {token}".encode())]
    assert front.check("/predict", "POST", headers)[1] is None
    key_path = audit.audit_key_path()
    rows = {"Authenticator.check (valid key, rate limit on)": measure(lambda: front.check("/predict", "POST", headers), n)}
    for policy, count in (("never", n), ("interval", n), ("always", max(200, n // 100))):
        log = AuditLog(folder / policy, name="bench", key_path=key_path, fsync=policy)
        record = lambda: log.request(request_id="0123456789abcdef0123456789abcdef", version="3", key_id="3f9a1c2b7d4e",  # noqa: E731
                                     method="POST", path="/predict", status=200, input=REQUEST, output=RESPONSE)
        rows[f"audit append, fsync={policy} (checkpoint every 1000)"] = measure(record, count)
        if policy == "interval":
            def both():
                key_id, _ = front.check("/predict", "POST", headers)
                log.request(request_id="0123456789abcdef0123456789abcdef", version="3", key_id=key_id,
                            method="POST", path="/predict", status=200, input=REQUEST, output=RESPONSE)
            rows["check + append (fsync=interval): the front's per-request cost"] = measure(both, n)
        log.close()
    return rows


if __name__ == "__main__":
    main()
