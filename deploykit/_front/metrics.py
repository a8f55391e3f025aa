"""The front's Prometheus series, kept in plain dicts and rendered in the text exposition format.

A client library would do, but the front imports only the standard library and what serves HTTP, and
the work per request here is two dict look-ups and a bisect. Series names are a contract (dashboards
and alert rules in ``templates/monitoring/`` use them); see ``docs/architecture.md``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ENDPOINTS = frozenset({"/predict", "/predict_proba", "/explain", "/schema", "/info", "/card", "/card.json",
                       "/livez", "/readyz", "/healthz", "/outcomes"})


def endpoint_label(path: str) -> str:
    """A bounded label: known endpoints by name, everything else as "other"."""
    return path if path in ENDPOINTS else "other"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values))


class Metrics:
    """Request counts and latencies per version, variant and endpoint, and named counters and gauges."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: dict[tuple, int] = defaultdict(int)  # (version, variant, endpoint, code)
        self.latency: dict[tuple, list] = {}  # (version, variant, endpoint) -> [bucket counts..., sum, count]
        self.counters: dict[tuple[str, tuple], float] = defaultdict(float)  # (series, ((label, value), ...))
        self.gauges: dict[tuple[str, tuple], float] = {}
        self.help: dict[str, str] = {}

    def observe(self, version: str, variant: str, endpoint: str, code: int, seconds: float) -> None:
        self.requests[(version, variant, endpoint, code)] += 1
        key = (version, variant, endpoint)
        row = self.latency.get(key)
        if row is None:
            row = self.latency[key] = [0] * (len(BUCKETS) + 2)
        row[bisect.bisect_left(BUCKETS, seconds)] += 1
        row[-2] += seconds
        row[-1] += 1

    def inc(self, series: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[(series, tuple(sorted(labels.items())))] += amount

    def set(self, series: str, value: float, **labels: str) -> None:
        self.gauges[(series, tuple(sorted(labels.items())))] = value

    def render(self, extra: str = "") -> bytes:
        out = ["# HELP deploykit_requests_total Requests answered by the front, by version, variant, endpoint and status.",
               "# TYPE deploykit_requests_total counter"]
        names = ("name", "version", "variant", "endpoint", "code")
        for key, count in sorted(self.requests.items()):
            out.append(f"deploykit_requests_total{{{_labels(names, (self.name, *key))}}} {count}")
        out += ["# HELP deploykit_request_duration_seconds Time from the request's arrival to the upstream's answer.",
                "# TYPE deploykit_request_duration_seconds histogram"]
        names = ("name", "version", "variant", "endpoint")
        for key, row in sorted(self.latency.items()):
            labels = _labels(names, (self.name, *key))
            cumulative = 0
            for bound, count in zip(BUCKETS, row):
                cumulative += count
                out.append(f'deploykit_request_duration_seconds_bucket{{{labels},le="{bound}"}} {cumulative}')
            out.append(f'deploykit_request_duration_seconds_bucket{{{labels},le="+Inf"}} {row[-1]}')
            out.append(f"deploykit_request_duration_seconds_sum{{{labels}}} {row[-2]:.6f}")
            out.append(f"deploykit_request_duration_seconds_count{{{labels}}} {row[-1]}")
        out += self._render_named(self.counters, "counter") + self._render_named(self.gauges, "gauge")
        text = "\n".join(out) + "\n"
        return (text + extra).encode()

    def _render_named(self, values: dict, kind: str) -> list[str]:
        out, typed = [], set()
        for (series, labels), value in sorted(values.items()):
            if series not in typed:
                typed.add(series)
                if series in self.help:
                    out.append(f"# HELP {series} {self.help[series]}")
                out.append(f"# TYPE {series} {kind}")
            pairs = (("name", self.name),) + labels
            out.append(f"{series}{{{_labels(tuple(k for k, _ in pairs), tuple(v for _, v in pairs))}}} {value:g}")
        return out
