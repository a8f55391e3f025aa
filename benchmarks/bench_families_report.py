"""The per-family benchmark's markdown report: one summary table, then each family's targets with PASS or
MISS and, for each MISS, its reason and what would close it."""

from __future__ import annotations

from bench_serving_report import fmt, ratio

C1, C16, EXPLAIN = ("predict", 1, 1), ("predict", 1, 16), ("explain", 1, 1)
FIXED_COST_MS = 1.0  # what an empty route under `bentoml serve` costs at c1 when the run could not measure it


def _case(entry: dict, server: str, case: tuple) -> dict | None:
    found = entry["servers"].get(server, {}).get("cases", {}).get(case)
    return found if found and found.get("p50_ms") is not None else None


def path_of(entry: dict) -> str:
    dk = entry["servers"].get("deploykit", {})
    return (dk.get("probe") or {}).get("path_1") or "unknown"


def _verdict(ok: bool | None, case: dict | None = None) -> str:
    if case is not None and case.get("errors"):
        return f"**MISS** ({case['errors']} errors)"
    return "n/a" if ok is None else ("PASS" if ok else "**MISS**")


def targets(entry: dict, fixed_ms: float | None = None) -> list[tuple[str, str, str, str]]:
    """(target, measured, verdict, reason for a MISS) for one family."""
    fixed = fixed_ms or FIXED_COST_MS
    rows = [_compiled(entry), _labels(entry), *_latency(entry, fixed), *_throughput(entry), _explain(entry, fixed)]
    return [r for r in rows if r is not None]


def _compiled(entry: dict) -> tuple:
    dk = entry["servers"].get("deploykit", {})
    fast = dk.get("fast_path") or {}
    path = path_of(entry)
    compiled = path not in ("sklearn", "unknown")
    measured = f"x-deploykit-path: {path}" + (f"; parity on {fast['rows_checked']} test rows, max difference "
                                             f"{fast['max_difference']:.1e}" if fast.get("enabled") else "")
    reason = "" if compiled else (fast.get("reason") or dk.get("error") or "unknown")
    return "compiled path serves, with parity", measured, _verdict(compiled if path != "unknown" else None), reason


def _labels(entry: dict) -> tuple:
    cells, bad = [], []
    for server, spec in entry["servers"].items():
        probe = spec.get("probe") or {}
        if "correct" in probe:
            cells.append(f"{server} {'yes' if probe['correct'] else 'NO'}")
            if not probe["correct"]:
                bad.append(server)
    reason = f"{', '.join(bad)} answered differently from in-process predict" if bad else ""
    return "1- and 100-row answers = in-process predict", "; ".join(cells) or "missing", _verdict(not bad if cells else None), reason


def _latency(entry: dict, fixed: float) -> list[tuple]:
    c1 = _case(entry, "deploykit", C1)
    floor = entry["floors"].get("predict_1")
    x = ratio(c1 and c1["p50_ms"], floor and floor["median_ms"])
    measured = f"p50 {fmt(c1['p50_ms'])} ms vs {fmt(floor['median_ms'])} ms = {x:.2f}×" if x is not None else "missing"
    reason = ""
    if x is not None and x > 1.2:
        reason = (f"the model's own call takes {fmt(floor['median_ms'])} ms; a served request also pays a fixed "
                  f"{fmt(fixed)} ms (an empty route's p50 in this run) for HTTP, BentoML's request path and validation, more than the "
                  "compiled call itself (µs): only a cheaper request path closes it (issue 15 point 2)")
    rows = [("1-row c1: p50 ≤ 1.2× in-process predict", measured, _verdict(None if x is None else x <= 1.2, c1), reason)]
    compiled = path_of(entry) not in ("sklearn", "unknown")
    ok = None if c1 is None or not compiled else c1["p50_ms"] < 2
    compiled_call = entry["floors"].get("compiled_1")
    reason = "" if ok is not False else (
        f"the compiled call takes {fmt((compiled_call or {}).get('median_ms'), 3)} ms in process and an empty route "
        f"{fmt(fixed)} ms: the rest is deploykit's request path (FastAPI routing, JSON, validation) and the "
        "machine's load; a lighter route is the lead's part of issue 15")
    rows.append(("1-row c1: p50 < 2 ms on the compiled path", f"p50 {fmt(c1['p50_ms'])} ms" if c1 else "missing",
                 _verdict(ok, c1) if compiled else "n/a (plain path)", reason))
    return rows


def _throughput(entry: dict) -> list[tuple]:
    c16, batching = _case(entry, "deploykit", C16), _case(entry, "bentoml-batching", C16)
    x = ratio(c16 and c16["rps"], batching and batching["rps"])
    measured = f"{fmt(c16['rps'])} vs {fmt(batching['rps'])} req/s = {x:.2f}×" if x is not None else "missing"
    reason = ("one worker under `bentoml serve` is capped by BentoML's request path (about 1,400–1,500 req/s "
              "in issue 6's runs): a socket per worker and a lighter route, the lead's part of issue 15"
              if x is not None and x < 3 else "")
    rows = [("1-row c16: ≥ 3× BentoML adaptive batching", measured, _verdict(None if x is None else x >= 3, c16), reason)]
    p99 = c16 and c16["p99_ms"]
    reason = "queueing behind one worker at its ceiling (as above)" if p99 is not None and p99 >= 20 else ""
    rows.append(("1-row c16: p99 < 20 ms", f"p99 {fmt(p99)} ms" if c16 else "missing",
                 _verdict(None if p99 is None else p99 < 20, c16), reason))
    return rows


def _explain(entry: dict, fixed: float) -> tuple | None:
    dk = entry["servers"].get("deploykit", {})
    explainer = dk.get("explainer") or {}
    if explainer.get("kind") != "tree":
        return None
    case = _case(entry, "deploykit", EXPLAIN)
    shap_floor, own = entry["floors"].get("tree_explainer_1"), entry["floors"].get("package_explainer_1")
    floor, name = ((shap_floor, "shap.TreeExplainer on the model") if shap_floor else
                   (own, f"deploykit's explainer ({(own or {}).get('algorithm')}) in process"))
    x = ratio(case and case["p50_ms"], floor and floor["median_ms"])
    measured = (f"p50 {fmt(case['p50_ms'])} ms vs {fmt(floor['median_ms'])} ms ({name}) = {x:.2f}×; served by "
                f"{explainer.get('algorithm')}" if x is not None else "missing")
    reason = ""
    if x is not None and x > 1.5:
        reason = (f"the in-process explainer takes {fmt(floor['median_ms'])} ms, close to the fixed {fmt(fixed)} ms "
                  "any served request costs (an empty route's p50)" if floor["median_ms"] < 2 * fixed else
                  "the served explainer does more than the in-process one (see the explain case)")
    return "1-row /explain c1: p50 ≤ 1.5× in-process explainer", measured, _verdict(None if x is None else x <= 1.5, case), reason


# -- rendering ---------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(r) + " |" for r in rows], ""]


def _summary_row(entry: dict) -> list[str]:
    def p50(server, case=C1):
        c = _case(entry, server, case)
        return fmt(c["p50_ms"]) if c else "–"

    def rps(server):
        c = _case(entry, server, C16)
        return fmt(c["rps"]) if c else "–"

    floor = entry["floors"].get("predict_1")
    c16 = _case(entry, "deploykit", C16)
    return [entry["label"], path_of(entry), p50("deploykit"), p50("bentoml"), p50("bentoml-batching"),
            fmt(floor["median_ms"]) if floor else "–", rps("deploykit"), rps("bentoml"), rps("bentoml-batching"),
            fmt(c16["p99_ms"]) if c16 else "–", p50("deploykit", EXPLAIN)]


def render(meta: dict, entries: list[dict]) -> str:
    out = [f"# deploykit per-family serving benchmark — {meta['date']}", "",
           f"`{meta['command']}` · {meta['elapsed_s']:.0f} s · {meta['machine']}", "",
           f"{meta['versions']}. {meta['settings']}. Load average before the run: {meta['load']}. "
           f"An empty route mounted in BentoML (as deploykit's app is) answered 1-row requests at c1 in "
           f"p50 {fmt(meta.get('fixed_ms'))} ms: the fixed cost of any request.", ""]
    if meta["quick"]:
        out += ["**--quick: one 1-s run per case without warm-up; for development only, not for the docs.**", ""]
    out += ["## Summary", "", "1-row requests; p50 in ms at concurrency 1, req/s and p99 at concurrency 16. "
            "`path` is deploykit's `x-deploykit-path` header.", ""]
    out += _table(["family", "path", "dk p50", "BentoML p50", "batching p50", "in-process predict", "dk req/s",
                   "BentoML req/s", "batching req/s", "dk p99 c16", "dk /explain p50"], [_summary_row(e) for e in entries])
    out += ["## Targets", ""]
    for entry in entries:
        rows = [[t, m, v, r] for t, m, v, r in targets(entry, meta.get("fixed_ms"))]
        out += [f"### {entry['label']}", ""] + _table(["target", "measured", "verdict", "reason for a MISS"], rows)
        errors = [f"{k}: {s['error']}" for k, s in entry["servers"].items() if s.get("error")]
        tree = (entry["servers"].get("deploykit", {}).get("explainer") or {}).get("kind") == "tree"
        if errors or (tree and entry["floors"].get("tree_explainer_error")):
            out += [f"- {e}" for e in errors]
            if tree and entry["floors"].get("tree_explainer_error"):
                out.append(f"- shap.TreeExplainer in process: {entry['floors']['tree_explainer_error']}")
            out.append("")
    out += ["## Notes", "", "- BentoML's services for models with text or missing values take `dict[str, Any]` rows "
            "(or arrays) and restore the training dtypes (benchmarks/servers/trained_frame.py).",
            "- The in-process explainer is shap.TreeExplainer on the model where it reads it, else deploykit's own "
            "explainer for the package, called in the harness on a 1-row DataFrame."]
    out += [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(out)
