"""The parity replay, run in a fresh, isolated interpreter by :mod:`deploykit._parity`::

    python -I -m deploykit._runtime.replay PACKAGE_DIR MANIFEST ROWS OUT EXPLAIN_ROWS

It loads the package with the runtime copy inside the package (``PACKAGE_DIR/deploykit_runtime``), not
with this deploykit, so it exercises exactly the code a server will run, on the manifest the package is
about to be written with. It replays the rows through the validator, the model and, when the package
has one, the compiled fast path; explains a few rows; and writes what it saw as JSON to ``OUT``: the
predictions, probabilities, the modules it had to import (they become the pinned requirements) and
its timings.
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def replay(package_dir: str, manifest_path: str, rows: list[dict], explain_rows: int) -> dict:
    started = time.perf_counter()
    sys.path.insert(0, package_dir)
    model = importlib.import_module("deploykit_runtime.model")
    manifest = importlib.import_module("deploykit_runtime.manifest")
    with open(manifest_path) as handle:
        loaded = manifest.Manifest.from_dict(json.load(handle))
    runtime = model.ModelRuntime.load(f"{package_dir}/model", manifest=loaded)
    out: dict = {"load_seconds": time.perf_counter() - started}
    columns = runtime.validator.columns_of(rows)  # every row, whatever max_batch says
    frame = runtime.validator.build(columns)
    out["predictions"] = runtime.predict(frame)["predictions"]
    if runtime.task != "regression":
        out["probabilities"] = runtime.predict_proba(frame)["probabilities"]
    if runtime.fast is not None:
        labels, probabilities = runtime.fast.run(columns)
        out["fast"] = {"predictions": labels, "probabilities": None if probabilities is None else probabilities.tolist()}
    if loaded.explainer and explain_rows:
        out["explanation"] = runtime.explain(frame.iloc[:explain_rows])
    out["modules"] = sorted({name.split(".")[0] for name in sys.modules})
    out["seconds"] = time.perf_counter() - started
    return out


def main(argv: list[str]) -> int:
    package_dir, manifest_path, rows_path, out_path, explain_rows = argv
    with open(rows_path) as handle:
        rows = json.load(handle)
    result = replay(package_dir, manifest_path, rows, int(explain_rows))
    with open(out_path, "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
