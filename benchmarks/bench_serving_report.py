"""The serving benchmark's markdown report: targets (PASS/MISS with figures), floors, start-up and memory,
and one table per case with every server's figures and deploykit's ratio against each."""

from __future__ import annotations

import statistics
from typing import Any

ENDPOINT_LABEL = {"predict": "/predict", "explain": "/explain"}
COMPILED_WORDS = ("onnx", "compiled", "treelite", "fast")


# -- small helpers -------------------------------------------------------------------------------------
def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) < 10 and digits == 1:
            return f"{value:.2f}"
        return f"{value:.{digits}f}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def case_label(endpoint: str, rows: int, concurrency: int) -> str:
    return f"{ENDPOINT_LABEL[endpoint]}, {rows} row{'s' if rows > 1 else ''}, concurrency {concurrency}"


def serving_path(start: dict | None) -> str:
    """Which path served deploykit's 1-row /predict: its response header, else the manifest, else unknown."""
    if not start:
        return "unknown"
    header = (start.get("probe") or {}).get("path_1")
    if header and header != "unknown":
        return header
    serving = (start.get("info") or {}).get("serving") or {}
    if "path" in serving:
        return f"{serving['path']} (manifest)"
    fast = serving.get("fast_path")
    if isinstance(fast, dict) and "enabled" in fast:
        return "compiled (manifest)" if fast["enabled"] else "plain (manifest)"
    return "unknown"


def flat(serving: dict) -> str:
    """A manifest's ``serving`` section as short ``key=value`` pairs (long strings such as hashes left out)."""
    pairs = []
    for key, value in serving.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            if isinstance(v, str) and len(v) > 24 or isinstance(v, (dict, list)):
                continue
            v = f"{v:.1e}" if isinstance(v, float) and v and abs(v) < 1e-3 else v
            pairs.append(f"{key}.{sub}={v}" if sub else f"{key}={v}")
    return ", ".join(pairs)


def is_compiled(path: str) -> bool | None:
    if path == "unknown":
        return None
    lowered = path.lower()
    return any(word in lowered for word in COMPILED_WORDS) and "false" not in lowered


# -- targets ---------------------------------------------------------------------------------------------
class Lookup:
    def __init__(self, results: list[dict], starts: dict, floors: dict) -> None:
        self.results, self.starts, self.floors = results, starts, floors

    def case(self, model: str, server: str, endpoint: str, rows: int, concurrency: int) -> dict | None:
        for r in self.results:
            if (r["model"], r["server"], r["endpoint"], r["rows"], r["concurrency"]) == (model, server, endpoint, rows, concurrency):
                return None if r.get("skipped") else r
        return None

    def start(self, model: str, server: str) -> dict | None:
        start = self.starts.get((model, server))
        return None if not start or start.get("error") or not start["cold_start_s"] else start


def _below(value: float | None, limit: float) -> bool | None:
    return None if value is None else value < limit


def _verdict(ok: bool | None, dk: dict | None, others: list[dict | None] = ()) -> str:
    if dk is not None and dk.get("errors"):
        return f"**MISS** ({dk['errors']} errors)"
    if dk is not None and not dk.get("rps"):  # e.g. a --quick run shorter than the first /explain's SHAP import
        return "n/a (no request was answered in the measured runs)"
    if ok is None:
        return "n/a"
    text = "PASS" if ok else "**MISS**"
    if any(o is not None and o.get("errors") for o in others):
        text += " ⚠ the comparison had errors"
    return text


def evaluate_targets(look: Lookup, model: str, dk: str) -> list[dict]:
    """The issue's targets for one model and one deploykit server; each row: target, measured, verdict."""
    return [*_c16_targets(look, model, dk), *_c1_targets(look, model, dk), _explain_target(look, model, dk),
            *_startup_targets(look, model, dk)]


def _row(target: str, measured: str, verdict: str) -> dict:
    return {"target": target, "measured": measured, "verdict": verdict}


def _c16_targets(look: Lookup, model: str, dk: str) -> list[dict]:
    c16 = look.case(model, dk, "predict", 1, 16)
    rows = []
    for other, factor, name in (("bentoml-batching", 3, "BentoML adaptive batching"), ("mlflow", 10, "mlflow models serve")):
        o = look.case(model, other, "predict", 1, 16)
        x = ratio(c16 and c16["rps"], o and o["rps"])
        measured = (f"{fmt(c16['rps'])} vs {fmt(o['rps'])} req/s = {x:.2f}×" if x is not None
                    else "missing: " + ("deploykit" if c16 is None else name) + " case did not run")
        rows.append(_row(f"1-row /predict c16: ≥ {factor}× {name} throughput", measured,
                         _verdict(None if x is None else x >= factor, c16, [o])))
    rows.append(_row("1-row /predict c16: p99 < 100 ms", f"p99 {fmt(c16['p99_ms'])} ms" if c16 else "missing",
                     _verdict(_below(c16 and c16["p99_ms"], 100), c16)))
    return rows


def _against_floor(case: dict | None, floor: dict | None) -> tuple[str, float | None]:
    x = ratio(case and case["p50_ms"], floor and floor["median_ms"])
    return (f"p50 {fmt(case['p50_ms'])} ms vs {fmt(floor['median_ms'])} ms = {x:.2f}×" if x is not None else "missing"), x


def _c1_targets(look: Lookup, model: str, dk: str) -> list[dict]:
    c1 = look.case(model, dk, "predict", 1, 1)
    measured, x = _against_floor(c1, (look.floors.get(model) or {}).get("predict_1"))
    rows = [_row("1-row /predict c1: p50 ≤ 1.2× in-process predict (1 row, as trained)", measured,
                 _verdict(None if x is None else x <= 1.2, c1))]
    path = serving_path(look.start(model, dk))
    compiled = is_compiled(path)
    if c1 is None or c1["p50_ms"] is None:
        verdict = _verdict(None, c1)
    elif compiled is None:
        verdict = f"n/a (path unknown; would be {'PASS' if c1['p50_ms'] < 2 else 'MISS'})"
    elif not compiled:
        verdict = "n/a (plain path served)"
    else:
        verdict = _verdict(c1["p50_ms"] < 2, c1)
    measured = f"p50 {fmt(c1['p50_ms'])} ms; path: {path}" if c1 else f"missing; path: {path}"
    rows.append(_row("1-row /predict c1: p50 < 2 ms when the compiled fast path serves", measured, verdict))
    return rows


def _explain_target(look: Lookup, model: str, dk: str) -> dict:
    ex = look.case(model, dk, "explain", 1, 1)
    measured, x = _against_floor(ex, (look.floors.get(model) or {}).get("tree_explainer_1"))
    return _row("1-row /explain c1: p50 ≤ 1.5× in-process TreeExplainer (1 row)", measured,
                _verdict(None if x is None else x <= 1.5, ex))


def _startup_targets(look: Lookup, model: str, dk: str) -> list[dict]:
    cold_target, rss_target = "cold start to first good answer ≤ BentoML defaults'", "idle RSS (process tree) ≤ BentoML defaults'"
    mine, theirs = look.start(model, dk), look.start(model, "bentoml")
    if not (mine and theirs):
        return [_row(cold_target, "missing", "n/a"), _row(rss_target, "missing", "n/a")]
    a, b = median(mine["cold_start_s"]), median(theirs["cold_start_s"])
    n = f"medians of {len(mine['cold_start_s'])} and {len(theirs['cold_start_s'])}"
    rows = [_row(cold_target, f"{a:.2f} s vs {b:.2f} s ({n})", _verdict(a <= b, None))]
    a, b = (median([m["rss_mib"] for m in s["idle"]]) for s in (mine, theirs))
    wa, wb = (median([m["largest_mib"] for m in s["idle"]]) for s in (mine, theirs))
    rows.append(_row(rss_target, f"{a:.0f} MiB vs {b:.0f} MiB (largest process {wa:.0f} vs {wb:.0f} MiB)", _verdict(a <= b, None)))
    return rows


# -- rendering ---------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(meta: dict, floors: dict, starts: dict, results: list[dict], specs: dict, models: dict) -> str:
    look = Lookup(results, starts, floors)
    out = [f"# deploykit serving benchmark — {meta['date']}", ""]
    out += [f"`{meta['command']}` · {meta['elapsed_s']:.0f} s · {meta['machine']}", ""]
    out += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in meta["facts"].items()] + [""]
    out += _targets_section(look, specs, models)
    out += _scaling_section(look, models)
    out += _floors_section(floors, models)
    out += _starts_section(starts, specs, models)
    out += _cases_section(look, specs, models)
    out += ["## Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(out)


def _targets_section(look: Lookup, specs: dict, models: dict) -> list[str]:
    out = ["## Targets (issue 6)", ""]
    for model in models:
        for dk in [k for k, spec in specs.items() if spec.deploykit and spec.workers == 1 and not spec.direct]:
            if any(r["model"] == model and r["server"] == dk for r in look.results):
                rows = [[r["target"], r["measured"], r["verdict"]] for r in evaluate_targets(look, model, dk)]
                out += [f"**{models[model]} — {specs[dk].label}**", "", _table(["target", "measured", "verdict"], rows), ""]
    return out


def scaling_targets(look: Lookup, model: str) -> list[dict]:
    """Issue 15's targets on one model: c16 throughput and tail, two workers against one (through the
    front and past it), 100-row c16 tail."""
    one, two = look.case(model, "deploykit", "predict", 1, 16), look.case(model, "deploykit-2w", "predict", 1, 16)
    batching = look.case(model, "bentoml-batching", "predict", 1, 16)
    rows = []
    for label, case in (("1 worker", one), ("2 workers", two)):
        x = ratio(case and case["rps"], batching and batching["rps"])
        rows.append(_row(f"1-row c16, {label}: ≥ 3× BentoML adaptive batching",
                         f"{fmt(case['rps'])} vs {fmt(batching['rps'])} req/s = {x:.2f}×" if x is not None else "missing",
                         _verdict(None if x is None else x >= 3, case, [batching])))
        rows.append(_row(f"1-row c16, {label}: ≥ 3,000 req/s", f"{fmt(case['rps'])} req/s" if case else "missing",
                         _verdict(None if case is None else case["rps"] >= 3000, case)))
        rows.append(_row(f"1-row c16, {label}: p99 < 20 ms", f"p99 {fmt(case['p99_ms'])} ms" if case else "missing",
                         _verdict(_below(case and case["p99_ms"], 20), case)))
    for label, a, b in (("through the front", "deploykit", "deploykit-2w"),
                        ("past the front (the version's own port)", "deploykit-direct", "deploykit-2w-direct")):
        first, second = look.case(model, a, "predict", 1, 16), look.case(model, b, "predict", 1, 16)
        x = ratio(second and second["rps"], first and first["rps"])
        rows.append(_row(f"1-row c16, two workers ≥ 1.6× one, {label}",
                         f"{fmt(second['rps'])} vs {fmt(first['rps'])} req/s = {x:.2f}×" if x is not None else "missing",
                         _verdict(None if x is None else x >= 1.6, second, [first])))
    for label, server in (("1 worker", "deploykit"), ("2 workers", "deploykit-2w")):
        case = look.case(model, server, "predict", 100, 16)
        rows.append(_row(f"100-row c16, {label}: p99 < 50 ms", f"p99 {fmt(case['p99_ms'])} ms" if case else "missing",
                         _verdict(_below(case and case["p99_ms"], 50), case)))
    return rows


def _scaling_section(look: Lookup, models: dict) -> list[str]:
    out = []
    for model in models:
        if any(r["model"] == model and r["server"] in ("deploykit-2w", "deploykit-2w-direct") for r in look.results):
            rows = [[r["target"], r["measured"], r["verdict"]] for r in scaling_targets(look, model)]
            out += [f"## Targets (issue 15): {models[model]}", "", _table(["target", "measured", "verdict"], rows), ""]
    return out


FLOOR_NAMES = {"predict_1": "predict, 1 row", "predict_100": "predict, 100 rows", "predict_proba_1": "predict_proba, 1 row",
               "tree_explainer_1": "shap.TreeExplainer, 1 row", "tree_explainer_100": "shap.TreeExplainer, 100 rows"}


def _floors_section(floors: dict, models: dict) -> list[str]:
    rows = [[models[m], FLOOR_NAMES[k], fmt(v["median_ms"], 3), fmt(v["p90_ms"], 3), str(v["repeats"])]
            for m, calls in floors.items() for k, v in calls.items()]
    return ["## In-process floors", "",
            "The model's own calls in the harness process (DataFrame input, as trained), `time.perf_counter` "
            "around each call, median over repeats.", "",
            _table(["model", "call", "median ms", "p90 ms", "repeats"], rows), ""]


def _starts_section(starts: dict, specs: dict, models: dict) -> list[str]:
    rows = [[models[model], specs[server].label, *_start_cells(s, specs[server])] for (model, server), s in starts.items()]
    header = ["model", "server", "cold start s", "idle RSS MiB", "largest MiB", "processes", "labels = in-process",
              "deploykit path", "notes"]
    return ["## Start-up and idle memory", "",
            "Cold start: process spawned → first 2xx answer to a 1-row predict (polled every 25 ms); for deploykit "
            "from its `start` progress event, packaging excluded. Idle RSS: summed over the server's process tree "
            "after it settled, before any load; 'largest' is its biggest single process (a worker).", "",
            _table(header, rows), ""]


def _start_cells(s: dict, spec) -> list[str]:
    if s.get("error"):
        return ["failed", "–", "–", "–", "–", "–", s["error"].splitlines()[0][:160]]
    cold = s["cold_start_s"]
    if not cold or not s["idle"]:
        return ["interrupted", "–", "–", "–", "–", "–", ""]
    samples = f" (n={len(cold)}: {', '.join(f'{c:.2f}' for c in cold)})" if len(cold) > 1 else ""
    probe, info = s.get("probe") or {}, s.get("info") or {}
    correct = "–" if "correct" not in probe else ("yes" if probe["correct"] else "**NO**")
    notes = [f"packaging {info['package_s']:.1f} s"] if info.get("package_s") else []
    if info.get("serving"):
        notes.append(f"manifest serving: {flat(info['serving'])}")
    return [f"{median(cold):.2f}{samples}", fmt(median([m["rss_mib"] for m in s["idle"]]), 0),
            fmt(median([m["largest_mib"] for m in s["idle"]]), 0), str(s["idle"][0]["processes"]), correct,
            serving_path(s) if spec.deploykit else "–", "; ".join(notes)]


def _cases_section(look: Lookup, specs: dict, models: dict) -> list[str]:
    out = ["## Cases", "",
           "Medians over the repeated runs of req/s, p50 and p99 (each run's percentiles from the load generator). "
           "`dk ×req/s` is deploykit's throughput over this server's (> 1: deploykit ahead); `dk ×p50` is "
           "deploykit's p50 over this server's (< 1: deploykit ahead); deploykit means its default path. "
           "Errors are summed over the measured runs; a row with errors is flagged ⚠. Peak RSS is the server's "
           "process tree during the runs; CPU is the cores its tree kept busy.", ""]
    for model in models:
        for case in _cases(look.results, model):
            out += _case_table(look, model, case, specs, models, look.floors)
    skipped = [r for r in look.results if r.get("skipped")]
    if skipped:
        out += ["## Skipped", ""]
        out += [f"- {models[r['model']]} · {specs[r['server']].label} · "
                f"{case_label(r['endpoint'], r['rows'], r['concurrency'])}: {r['skipped']}" for r in skipped] + [""]
    return out


def _cases(results: list[dict], model: str) -> list[tuple]:
    seen = []
    for r in results:
        key = (r["endpoint"], r["rows"], r["concurrency"])
        if r["model"] == model and key not in seen and not r.get("skipped"):
            seen.append(key)
    order = {"predict": 0, "explain": 1}
    return sorted(seen, key=lambda k: (order[k[0]], k[1], k[2]))


def _case_table(look: Lookup, model: str, case: tuple, specs: dict, models: dict, floors: dict) -> list[str]:
    endpoint, rows_n, conc = case
    ref = look.case(model, "deploykit", *case)
    rows = []
    for r in [r for r in look.results if r["model"] == model and (r["endpoint"], r["rows"], r["concurrency"]) == case]:
        if r.get("skipped"):
            continue
        flag = " ⚠" if r["errors"] else ""
        errors = f"⚠ {r['errors']} ({r['error_detail']})" if r["errors"] else "0"
        if r.get("warmup_errors"):
            errors += f" (+{r['warmup_errors']} in warm-up)"
        rows.append([specs[r["server"]].label + flag, fmt(r["rps"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), errors,
                     fmt(r["rss_peak_mib"], 0), fmt(r["cpu_cores"]),
                     _x(ratio(ref and ref["rps"], r["rps"])), _x(ratio(ref and ref["p50_ms"], r["p50_ms"]))])
    if conc == 1:
        floor_key = {("predict", 1): "predict_1", ("predict", 100): "predict_100",
                     ("explain", 1): "tree_explainer_1", ("explain", 100): "tree_explainer_100"}.get((endpoint, rows_n))
        floor = (floors.get(model) or {}).get(floor_key)
        if floor:
            name = "in-process " + ("predict" if endpoint == "predict" else "TreeExplainer") + " (floor)"
            rows.append([name, "–", fmt(floor["median_ms"]), fmt(floor["p90_ms"]) + " (p90)", "–", "–", "–", "–",
                         _x(ratio(ref and ref["p50_ms"], floor["median_ms"]))])
    header = ["server", "req/s", "p50 ms", "p99 ms", "errors", "peak RSS MiB", "CPU cores", "dk ×req/s", "dk ×p50"]
    return [f"### {models[model]} — {case_label(endpoint, rows_n, conc)}", "", _table(header, rows), ""]


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"
