"""``Deployment.compare()``: the live version and the candidate side by side, on real traffic.

The front keeps, while a candidate exists, each variant's tally (requests, errors, latencies), the
experiment's events, and the raw answers of recent requests, its copies included
(``GET /_deploykit/experiment``). This module turns them into a report: for each variant its
requests, errors, p50 and p99, and the distribution of its predictions; for a shadow or a canary, the
requests both versions answered, joined by request id: how often they gave the same label, and how
their scores differ; a canary's steps and any guardrail that broke; every action with its time and
reason.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAIRED_KINDS = ("shadow", "canary")
BINS = 20


def _rows_of(endpoint: str, body: str) -> tuple[list | None, list | None]:
    """(labels or values, scores) of one answer: /predict gives labels (or regression values), /predict_proba
    probabilities (its labels are their argmax; its score the last class's probability)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None, None
    if endpoint == "/predict" and isinstance(answer.get("predictions"), list):
        values = answer["predictions"]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        return values, (values if numeric else None)
    if endpoint == "/predict_proba" and isinstance(answer.get("probabilities"), list):
        probabilities = np.asarray(answer["probabilities"], dtype="float64")
        classes = answer.get("classes") or list(range(probabilities.shape[1]))
        return [classes[i] for i in probabilities.argmax(axis=1)], probabilities[:, -1].tolist()
    return None, None


def _distribution(values: list) -> dict:
    """Label shares for labels; quantiles for numbers (regression values or scores)."""
    if not values:
        return {}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) > 20:
        q = np.quantile(np.asarray(values, dtype="float64"), [0.05, 0.25, 0.5, 0.75, 0.95])
        return {"kind": "values", "quantiles": dict(zip(("p5", "p25", "p50", "p75", "p95"), q.tolist())), "n": len(values)}
    counts = Counter(map(str, values))
    return {"kind": "labels", "shares": {k: c / len(values) for k, c in sorted(counts.items())}, "n": len(values)}


@dataclass
class Comparison:
    """The report of an experiment; ``to_dict()`` for machines, an HTML display, ``str()`` for terminals."""

    name: str
    strategy: dict
    variants: dict
    paired: dict | None
    steps: list = field(default_factory=list)
    guardrail: dict | None = None
    events: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "strategy": self.strategy.get("kind"), "settings": self.strategy,
                "variants": self.variants, "paired": self.paired, "steps": self.steps, "guardrail": self.guardrail,
                "events": self.events}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    def __str__(self) -> str:
        lines = [f"{self.name}: {self.strategy.get('kind')} experiment"]
        for role in ("live", "candidate"):
            v = self.variants[role]
            if v.get("version") is None:
                continue
            lines.append(f"  {role:>9} v{v['version']}: {v['requests']} requests, {v['errors']} errors, "
                         f"p50 {_ms(v['p50_ms'])}, p99 {_ms(v['p99_ms'])}, predictions {_shares(v['predictions'])}")
        if self.paired:
            lines.append(f"  paired: {self.paired['requests']} requests, {self.paired['rows']} rows, "
                         f"agreement {self.paired['agreement']:.1%}" if self.paired["agreement"] is not None
                         else f"  paired: {self.paired['requests']} requests")
        for step in self.steps:
            lines.append(f"  step {step['step']}: {step['traffic']:.0%} at {step['at']}")
        if self.guardrail:
            lines.append(f"  guardrail broke at {self.guardrail['at']}: {self.guardrail['reason']}")
        for event in self.events:
            lines.append(f"  {event['at']}  {event['action']}: {event['reason']}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        agreement = self.paired.get("agreement") if self.paired else None
        shown = f", agreement {agreement:.1%}" if agreement is not None else ""
        return f"<Comparison {self.name} · {self.strategy.get('kind')}{shown}>"

    def _repr_html_(self) -> str:
        from ._templates import read, render

        return render("display/compare.html.j2", c=self, d=self.to_dict(), css=read("display/style.css"),
                      histogram=_histogram_svg(self.paired.get("score_differences") if self.paired else None))


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _shares(distribution: dict) -> str:
    if distribution.get("kind") == "labels":
        return ", ".join(f"{k} {v:.0%}" for k, v in distribution["shares"].items())
    if distribution.get("kind") == "values":
        return f"median {distribution['quantiles']['p50']:.3g}"
    return "none yet"


def _at(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="seconds")


def _histogram_svg(differences: dict | None) -> str:
    """Bars of the score-difference histogram as inline SVG (no plotting library at display time)."""
    if not differences or not differences.get("counts"):
        return ""
    counts, edges = differences["counts"], differences["edges"]
    top = max(counts) or 1
    width, height = 360, 90
    bar = width / len(counts)
    bars = "".join(f'<rect x="{i * bar:.1f}" y="{height - 70 * c / top:.1f}" width="{bar - 1:.1f}" height="{70 * c / top:.1f}" '
                   f'class="dk-hist-bar"><title>{edges[i]:+.3f} … {edges[i + 1]:+.3f}: {c}</title></rect>'
                   for i, c in enumerate(counts))
    return (f'<svg viewBox="0 0 {width} {height + 14}" width="{width}" height="{height + 14}" role="img" '
            f'aria-label="distribution of score differences">{bars}'
            f'<text x="0" y="{height + 12}" class="dk-hist-axis">{edges[0]:+.3f}</text>'
            f'<text x="{width}" y="{height + 12}" text-anchor="end" class="dk-hist-axis">{edges[-1]:+.3f}</text></svg>')


def build(name: str, report: dict) -> Comparison:
    """A Comparison from what the front reported (``GET /_deploykit/experiment``)."""
    served: dict[str, list] = {"live": [], "candidate": []}
    copies: dict[str, list] = {"live": [], "candidate": []}
    answers: dict[str, dict] = {}
    for record in report.get("records", []):
        labels, scores = _rows_of(record["endpoint"], record["body"]) if record["status"] == 200 else (None, None)
        if labels is None:
            continue
        (copies if record["mirrored"] else served)[record["role"]].extend(labels)
        answers.setdefault(record["request_id"], {})[record["role"]] = (record["endpoint"], labels, scores)
    variants = {}
    for role in ("live", "candidate"):
        side = report[role]
        # what it answered clients; a shadow answers none, so its copies' answers show what it predicts
        predictions = served[role] or copies[role]
        variants[role] = {"version": side["version"], **side["served"], "mirrored": side["mirrored"],
                          "predictions": _distribution(predictions)}
    strategy = report["strategy"]
    events = [{**e, "at": _at(e["time"])} for e in report.get("events", [])]
    return Comparison(
        name=name, strategy=strategy, variants=variants,
        paired=_pairs(answers, report.get("mirror_dropped", 0)) if strategy.get("kind") in PAIRED_KINDS else None,
        steps=[{"step": e.get("step"), "traffic": e.get("traffic"), "at": e["at"]} for e in events if e["action"] == "step"],
        guardrail=next(({"reason": e["reason"], "at": e["at"]} for e in events if e["action"] == "guardrail"), None),
        events=events)


def _pairs(answers: dict, dropped: int) -> dict:
    """Requests both versions answered (same endpoint), row by row: label agreement, score differences."""
    requests = rows = same = 0
    differences: list[float] = []
    for both in answers.values():
        if "live" not in both or "candidate" not in both or both["live"][0] != both["candidate"][0]:
            continue
        (_, live_labels, live_scores), (_, cand_labels, cand_scores) = both["live"], both["candidate"]
        if len(live_labels) != len(cand_labels):
            continue
        requests += 1
        rows += len(live_labels)
        same += sum(a == b for a, b in zip(live_labels, cand_labels))
        if live_scores is not None and cand_scores is not None:
            differences += [float(c) - float(a) for a, c in zip(live_scores, cand_scores)]
    histogram = None
    if differences:
        counts, edges = np.histogram(differences, bins=BINS)
        histogram = {"counts": counts.tolist(), "edges": edges.tolist(), "mean": float(np.mean(differences)),
                     "max_abs": float(np.max(np.abs(differences)))}
    return {"requests": requests, "rows": rows, "agreement": same / rows if rows else None,
            "score_differences": histogram, "mirror_dropped": dropped}


def compare(deployment: Any) -> Comparison:
    """The comparison report of ``deployment``'s running (or last) experiment."""
    from .exceptions import ConfigError

    report = deployment.front.call("GET", "experiment")
    if report["candidate"]["version"] is None and not report.get("events"):
        raise ConfigError(f"{deployment.name} runs no experiment: deploy a candidate with strategy='shadow', "
                          "'canary' or 'ab' first")
    return build(deployment.name, report)
