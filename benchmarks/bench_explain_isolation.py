"""How much a long /explain slows the rest of a service: /livez and 1-row /predict latency while an
explanation runs, with it in the service's worker thread, and with the same work in another process.

    python benchmarks/bench_explain_isolation.py URL PACKAGE_DIR [--rows 60] [--seconds 20]

URL is a running deploykit service of a model explained by Kernel SHAP; PACKAGE_DIR its package's
``model/`` folder (to run the same explanation in a separate process for the comparison). Prints the
p50/p99/max of each probe in both modes (docs/serving.md, "Explanations off the event loop").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1] + "/..")
from deploykit_runtime.model import ModelRuntime
runtime = ModelRuntime.load(sys.argv[1])
rows = json.loads(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
runtime.explain_columns(runtime.columns({"instances": rows}))
"""


def _probe(url: str, path: str, body: dict | None, stop: threading.Event, out: list) -> None:
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post(url + path, json=body) if body else client.get(url + path)
            out.append((time.perf_counter() - started) * 1e3)
            assert response.status_code == 200, response.text
            time.sleep(0.05)


def _stats(values: list) -> str:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return f"n={len(values)} p50={pick(0.5):.1f} ms p99={pick(0.99):.1f} ms max={values[-1]:.1f} ms"


def measure(url: str, explain, seconds: float, row: dict) -> dict:
    stop, livez, predict = threading.Event(), [], []
    probes = [threading.Thread(target=_probe, args=(url, "/livez", None, stop, livez)),
              threading.Thread(target=_probe, args=(url, "/predict", {"instances": [row]}, stop, predict))]
    for probe in probes:
        probe.start()
    started = time.perf_counter()
    explain()
    took = time.perf_counter() - started
    stop.set()
    for probe in probes:
        probe.join()
    return {"explain_seconds": round(took, 1), "livez": _stats(livez), "predict": _stats(predict)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("package_dir")
    parser.add_argument("--rows", type=int, default=60)
    args = parser.parse_args()
    sample = json.loads(Path(args.package_dir, "background.json").read_text())
    rows = (sample * (args.rows // len(sample) + 1))[: args.rows]

    def in_service() -> None:
        response = httpx.post(args.url + "/explain", json={"instances": rows}, timeout=3600)
        assert response.status_code == 200, response.text

    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(Path(args.package_dir).resolve()), json.dumps(rows)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"

    def in_process() -> None:
        child.stdin.write("go\n")
        child.stdin.flush()
        child.wait()

    quiet = measure(args.url, lambda: time.sleep(5), 5, rows[0])
    threaded = measure(args.url, in_service, 0, rows[0])
    separate = measure(args.url, in_process, 0, rows[0])
    print(json.dumps({"idle": quiet, "thread (the service)": threaded, "separate process": separate}, indent=1))


if __name__ == "__main__":
    main()
