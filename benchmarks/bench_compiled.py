"""Compiled engines measured per family (issue 15): how the compiled path's engine order was chosen.

    python benchmarks/bench_compiled.py                   # all families, prints a markdown table
    python benchmarks/bench_compiled.py --families rf,pipeline

For every family of ``bench_serving_models.FAMILIES`` and every engine deploykit can compile its final
estimator with (treelite; ONNX Runtime in double, then single precision), in this process and on one
thread: whether it converts, its parity against the model on the 1,000 test rows (label mismatches,
largest probability or value difference), and the median time of a 1-row and a 100-row call through
the served compiled path (validated columns → numpy preprocessing → engine → labels and probabilities),
beside the model's own ``predict_proba`` (``predict`` for regressors) on a DataFrame.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # as the service runs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_serving_models as models_mod  # noqa: E402


def measure_family(key: str, data: tuple, budget: float) -> list[dict]:
    from deploykit._capture import inspect_model
    from deploykit._fastpath import TOLERANCE, _compare, _split_candidates
    from deploykit._runtime.fastpath import FastPath
    from deploykit._runtime.schema import InstanceValidator
    from deploykit._schema import infer_schema, records

    fitted = models_mod.fit(key, data)
    model, X_test = fitted.model, fitted.X_test
    facts = inspect_model(model, fitted.X_train)
    schema = infer_schema(fitted.X_train)
    own = model.predict if facts.task == "regression" else model.predict_proba
    rows = [{"family": models_mod.FAMILIES[key][0], "engine": "in-process " + own.__name__, "converts": "–",
             "mismatches": "–", "max_diff": None,
             "one": models_mod.time_call(lambda: own(X_test.iloc[:1]), budget_s=budget)["median_ms"],
             "hundred": models_mod.time_call(lambda: own(X_test.iloc[:100]), budget_s=budget)["median_ms"]}]
    validator = InstanceValidator(schema)
    one, hundred = (validator.columns_of(records(X_test.iloc[:n])) for n in (1, 100))
    chosen = False
    with tempfile.TemporaryDirectory() as tmp:
        for record, label in _split_candidates(model, schema, Path(tmp)):
            row = {"family": "", "engine": label.split(":")[0], "converts": "yes" if record else "no"}
            if record is None:
                rows.append({**row, "mismatches": "–", "max_diff": None, "one": None, "hundred": None,
                             "note": label.split(": ", 1)[-1][:90]})
                continue
            try:
                path = FastPath(Path(tmp), record, schema, facts.task, facts.classes)
                mismatches, diff = _compare(model, facts, schema, X_test, path)
            except Exception as exc:  # an operator without a kernel
                rows.append({**row, "converts": "no", "mismatches": "–", "max_diff": None, "one": None,
                             "hundred": None, "note": f"{type(exc).__name__}: {str(exc)[:80]}"})
                continue
            passes = mismatches == 0 and diff <= TOLERANCE
            rows.append({**row, "mismatches": f"{mismatches} / {len(X_test)}", "max_diff": diff,
                         "one": models_mod.time_call(lambda: path.run(one), budget_s=budget)["median_ms"],
                         "hundred": models_mod.time_call(lambda: path.run(hundred), budget_s=budget)["median_ms"],
                         "note": ("**chosen**" if passes and not chosen else "passes" if passes else "refused")})
            chosen = chosen or passes
    return rows


def render(rows: list[dict]) -> str:
    def ms(value):
        return "–" if value is None else (f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms")

    lines = ["| family | engine | converts | label mismatches | largest difference | 1 row | 100 rows | |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        diff = "–" if r["max_diff"] is None else f"{r['max_diff']:.1e}"
        lines.append(f"| {r['family']} | {r['engine']} | {r['converts']} | {r['mismatches']} | {diff} | {ms(r['one'])} | "
                     f"{ms(r['hundred'])} | {r.get('note', '')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(models_mod.FAMILIES))
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of repeats per timed call (default 1)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    data, rows = {}, []
    for key in args.families.split(","):
        kind = models_mod.FAMILIES[key][2]
        data.setdefault(kind, models_mod.make_data(kind))
        rows += measure_family(key, data[kind], args.budget)
        print(f"measured {key}", file=sys.stderr, flush=True)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
