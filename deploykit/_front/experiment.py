"""The evidence of a running experiment, the canary's guardrails and steps, and its history.

Every answer the front forwards while a candidate exists is tallied per variant (time, latency,
whether it failed, whether it was a mirrored copy). A canary's guardrails are read from the
candidate's tally over the current step: if its error rate or its p99 goes past the limit once at
least ``min_requests`` answers are in, the front takes the candidate's traffic to 0% at once, stops
it and records why; if the step's interval passes with the guardrails held, the traffic moves to the
next step, and after the last one the candidate is promoted. Every action (start, step, guardrail,
promote, rollback) is appended to ``experiment.jsonl`` in the deployment's folder, with its time and
reason; the control plane's own actions come through the admin API, so the front is the log's only
writer.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque

MAX_SAMPLES = 100_000
MAX_RECORDS = 20_000  # recent answers kept for the comparison (their bodies: labels and scores)
MAX_RECORD_BODY = 64 * 1024
RECORDED = frozenset({"/predict", "/predict_proba"})
LOG = "experiment.jsonl"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Tally:
    """Answers per variant: (time, seconds, failed, mirrored), the newest :data:`MAX_SAMPLES` of each."""

    def __init__(self) -> None:
        self.samples = {"live": deque(maxlen=MAX_SAMPLES), "candidate": deque(maxlen=MAX_SAMPLES)}
        self.mirror_dropped = 0
        self.since = time.time()

    def add(self, variant: str, seconds: float, failed: bool, mirrored: bool = False) -> None:
        self.samples[variant].append((time.time(), seconds, failed, mirrored))

    def summary(self, variant: str, since: float | None = None, mirrored: bool | None = None) -> dict:
        rows = [s for s in self.samples[variant] if (since is None or s[0] >= since)
                and (mirrored is None or s[3] == mirrored)]
        latencies = [s[1] * 1e3 for s in rows]
        errors = sum(1 for s in rows if s[2])
        return {"requests": len(rows), "errors": errors, "error_rate": errors / len(rows) if rows else None,
                "p50_ms": _percentile(latencies, 0.50), "p99_ms": _percentile(latencies, 0.99)}


class Experiment:
    """The deployment's experiment: its tally, its event log, and the canary's controller."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LOG)
        self.tally = Tally()
        self.records: deque = deque(maxlen=MAX_RECORDS)
        self.events = self._read()

    def _read(self) -> list[dict]:
        try:
            with open(self.path) as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except OSError:
            return []

    def record(self, action: str, reason: str, **details) -> dict:
        event = {"time": time.time(), "action": action, "reason": reason, **details}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(event) + "\n")
        self.events.append(event)
        return event

    def restart(self) -> None:
        """A new experiment starts: the evidence of the previous one no longer applies."""
        self.tally = Tally()
        self.records.clear()

    def keep(self, request_id: bytes, role: str, mirrored: bool, path: str, status: int, body: bytes) -> None:
        """Keep an answer for the comparison (the body is parsed only when a report is asked for)."""
        if path in RECORDED and len(body) <= MAX_RECORD_BODY:
            self.records.append((request_id, role, mirrored, path, status, body))

    # -- the canary ------------------------------------------------------------------------------------
    def broken(self, strategy: dict) -> str | None:
        """Why the canary's guardrails no longer hold over its current step, or None."""
        rails = strategy["guardrails"]
        seen = self.tally.summary("candidate", since=strategy.get("step_started"), mirrored=False)
        if seen["requests"] < rails["min_requests"]:
            return None
        if rails.get("error_rate") is not None and seen["error_rate"] > rails["error_rate"]:
            return (f"error rate {seen['error_rate']:.2%} over {seen['requests']} candidate requests is above the "
                    f"guardrail of {rails['error_rate']:.2%}")
        if rails.get("p99_ms") is not None and seen["p99_ms"] > rails["p99_ms"]:
            return f"p99 {seen['p99_ms']:.1f} ms over {seen['requests']} candidate requests is above the guardrail of {rails['p99_ms']} ms"
        return None

    def next_step(self, strategy: dict, now: float) -> float | None:
        """The traffic of the canary's next step when its current step is over and held, else None
        (1.0 held for a whole interval means: promote)."""
        steps = strategy.get("steps")
        if not steps or now - strategy.get("step_started", now) < strategy["interval"]:
            return None
        seen = self.tally.summary("candidate", since=strategy.get("step_started"), mirrored=False)
        if seen["requests"] < strategy["guardrails"]["min_requests"]:
            return None  # not enough evidence yet: the step lasts until there is
        index = strategy.get("step", 0) + 1
        return steps[index] if index < len(steps) else 2.0  # past the last step

    def report(self, routes) -> dict:
        """What the control plane's comparison reads: the strategy, each variant's answers, the events."""
        return {
            "strategy": routes.strategy, "since": self.tally.since,
            "live": {"version": routes.live.version if routes.live else None,
                     "served": self.tally.summary("live", mirrored=False), "mirrored": self.tally.summary("live", mirrored=True)},
            "candidate": {"version": routes.candidate.version if routes.candidate else None,
                          "served": self.tally.summary("candidate", mirrored=False),
                          "mirrored": self.tally.summary("candidate", mirrored=True)},
            "mirror_dropped": self.tally.mirror_dropped,
            "events": [e for e in self.events if e["time"] >= self.tally.since - 1.0][-200:],
            "records": [{"request_id": r.decode(), "role": role, "mirrored": mirrored, "endpoint": path, "status": status,
                         "body": body.decode("utf-8", "replace")} for r, role, mirrored, path, status, body in self.records],
        }
