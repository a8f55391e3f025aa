"""Prediction capture: what it costs the front, and how long the monitor's report takes on 1M rows.

Both candidate stores side by side, for the choice the issue asks to make by measurement:

1. writer cost: a tight loop that does what the front does per request (some CPU work standing in for
   proxying, then ``CaptureWriter.record``) at 1-row requests, with capture off, with the SQLite
   writer, and with the same writer writing to DuckDB; throughput of the loop and the writer's drops.
   (The end-to-end HTTP figure at c=16 through the front is the lead's, once capture is wired in.)
2. concurrency: can a second process read the store while the writer holds it open?
3. report: ``monitor()`` on ROWS captured rows x 20 features (read the window, bin, calibrate the
   thresholds at that size from a cold cache, test), against DuckDB reading the same rows natively;
   then the SQLite report's parts one by one, and SQLite scanning the same cells in SQL (the floor of
   any reader of this file).

    .venv/bin/python benchmarks/bench_capture.py                  # full: 1M rows
    .venv/bin/python benchmarks/bench_capture.py --rows 200000 --seconds 3   # smoke run
    .venv/bin/python benchmarks/bench_capture.py --parts report                # the report only
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from deploykit._front import capture
from deploykit._front.capture import CaptureWriter
from deploykit._monitor.drift import drift
from deploykit._monitor.reference import make_reference
from deploykit._monitor import stats
from deploykit._monitor.report import MODEL_ENDPOINTS, monitor, read_kinds
from deploykit._monitor.store import CaptureStore
from deploykit._schema import infer_schema

FEATURES = 20
PARTS = ("writer", "concurrency", "report")


class DuckDBWriter(CaptureWriter):
    """The same queue, thread and parsing, writing to DuckDB instead of SQLite (for comparison only)."""

    def __init__(self, state_dir, name, **options):
        import duckdb

        Path(state_dir).mkdir(parents=True, exist_ok=True)
        self._duck = duckdb.connect(str(Path(state_dir) / "capture.duckdb"))
        self._duck.execute("CREATE TABLE IF NOT EXISTS captures (request_id VARCHAR, row INTEGER, time DOUBLE, "
                           "version VARCHAR, variant VARCHAR, endpoint VARCHAR, status INTEGER, prediction VARCHAR, "
                           "probabilities VARCHAR, raw VARCHAR)")
        super().__init__(Path(state_dir) / "sqlite-unused", name, **options)

    def _add_columns(self, keys):
        for key in keys:
            if key not in self._columns:
                self._duck.execute(f"ALTER TABLE captures ADD COLUMN {capture.quote(capture.FEATURE_PREFIX + key)} DOUBLE")
                self._columns.add(key)

    def _insert(self, rows, names):
        columns = ", ".join([*capture.META_COLUMNS, *(capture.quote(capture.FEATURE_PREFIX + n) for n in names)])
        marks = ", ".join("?" * (len(capture.META_COLUMNS) + len(names)))
        values = [(m[0], row, m[1], m[2], m[3], m[4], m[5], None if p is None else str(p), proba, raw,
                   *[features.get(n) for n in names]) for m, row, p, proba, raw, features in rows]
        self._duck.executemany(f"INSERT INTO captures ({columns}) VALUES ({marks})", values)


# -- 1. writer cost -----------------------------------------------------------------------------------
def front_work(microseconds: float) -> None:
    """CPU work standing in for what the front spends proxying one request (parsing, httpx, metrics)."""
    end = time.perf_counter() + microseconds / 1e6
    while time.perf_counter() < end:
        pass


def loop_throughput(writer, bodies, seconds: float, work_us: float) -> tuple[float, int]:
    answer = b'{"predictions": [1], "model": {"name": "bench", "version": "1"}}'
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        front_work(work_us)
        if writer is not None:
            writer.record(f"{done:032x}", time.time(), "1", "live", "/predict", 200, bodies[done % len(bodies)], answer)
        done += 1
    rate = done / (time.perf_counter() - start)
    if writer is not None:
        writer.flush(60)
        writer.close()
    return rate, (writer.dropped if writer is not None else 0)


def writer_cost(seconds: float, work_us: float) -> list[dict]:
    rng = np.random.default_rng(0)
    bodies = [json.dumps({"instances": [{f"f{j}": round(float(v), 4) for j, v in enumerate(rng.normal(size=FEATURES))}]}).encode()
              for _ in range(1000)]
    results = []
    for label, make in (("off", lambda d: None), ("sqlite", lambda d: CaptureWriter(d, "bench")),
                        ("duckdb", lambda d: DuckDBWriter(d, "bench"))):
        with tempfile.TemporaryDirectory() as folder:
            rate, dropped = loop_throughput(make(folder), bodies, seconds, work_us)
        results.append({"capture": label, "requests_per_s": rate, "dropped": dropped})
    base = results[0]["requests_per_s"]
    for r in results:
        r["slowdown"] = 1 - r["requests_per_s"] / base
    return results


def record_cost(n: int = 200_000) -> float:
    """Nanoseconds one record() call costs the event loop when capture is on (the queue drained meanwhile)."""
    with tempfile.TemporaryDirectory() as folder:
        writer = CaptureWriter(folder, "bench", queue_size=n + 1, interval=3600)
        body = b'{"instances": [{"f0": 1.0}]}'
        start = time.perf_counter_ns()
        for i in range(n):
            writer.record("id", 0.0, "1", "live", "/predict", 200, body, b"{}")
        cost = (time.perf_counter_ns() - start) / n
        writer._queue.clear()
        writer.close()
    return cost


# -- 2. concurrency -----------------------------------------------------------------------------------
def concurrent_reader(folder: Path) -> dict:
    """Open each store from a second process while this one holds it open for writing."""
    sqlite_writer = CaptureWriter(folder, "bench")
    sqlite_writer.record("a", 1.0, "1", "live", "/predict", 200, b'{"instances": [{"f0": 1}]}', b"{}")
    sqlite_writer.flush()
    duck = DuckDBWriter(folder / "duck", "bench")
    probes = {
        "sqlite": f"import sqlite3; c = sqlite3.connect('file:{capture.database(folder)}?mode=ro', uri=True); "
                  "print(c.execute('select count(*) from captures').fetchone()[0])",
        "duckdb": f"import duckdb; c = duckdb.connect('{folder / 'duck' / 'capture.duckdb'}', read_only=True); "
                  "print(c.execute('select count(*) from captures').fetchone()[0])",
    }
    out = {}
    for store, code in probes.items():
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        out[store] = "yes" if result.returncode == 0 else "no: " + result.stderr.strip().splitlines()[-1][:160]
    sqlite_writer.close()
    duck.close()
    return out


# -- 3. report on ROWS x 20 ---------------------------------------------------------------------------
def synthetic(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"f{j}": rng.normal(j, 1 + j / 10, rows).round(3) for j in range(14)}
    data.update({f"c{j}": rng.choice(["a", "b", "c", "d", "e"][: 2 + j % 4], rows) for j in range(6)})
    return pd.DataFrame(data)


def fill_sqlite(folder: Path, frame: pd.DataFrame) -> float:
    """Bulk-load captured rows in the capture format (as the writer would have left them)."""
    start = time.perf_counter()
    con = capture.connect(capture.database(folder))
    for name in frame.columns:
        con.execute(f"ALTER TABLE captures ADD COLUMN {capture.quote(capture.FEATURE_PREFIX + name)}")
    columns = ", ".join([*capture.META_COLUMNS, *(capture.quote(capture.FEATURE_PREFIX + n) for n in frame.columns)])
    marks = ", ".join("?" * (len(capture.META_COLUMNS) + frame.shape[1]))
    now = time.time() - len(frame) / 1000
    con.execute("BEGIN")
    for start_row in range(0, len(frame), 100_000):
        part = frame.iloc[start_row:start_row + 100_000]
        meta = [(f"{start_row + i:032x}", 0, now + (start_row + i) / 1000, "1", "live", "/predict", 200, 1, None, None)
                for i in range(len(part))]
        con.executemany(f"INSERT INTO captures ({columns}) VALUES ({marks})",
                        [m + tuple(r) for m, r in zip(meta, part.itertuples(index=False, name=None))])
    con.execute("COMMIT")
    con.close()
    return time.perf_counter() - start


def fill_duckdb(folder: Path, frame: pd.DataFrame) -> tuple[float, Path]:
    import duckdb

    start = time.perf_counter()
    path = folder / "capture.duckdb"
    con = duckdb.connect(str(path))
    con.register("frame", frame)
    con.execute("CREATE TABLE captures AS SELECT * FROM frame")
    con.close()
    return time.perf_counter() - start, path


def report_time(rows: int) -> dict:
    reference_frame = synthetic(5000, 1)
    reference = make_reference(infer_schema(reference_frame), reference_frame, name="bench", version="1",
                               top_features=["f0", "f1", "c0"])
    frame = synthetic(rows, 2)
    out = {"rows": rows, "features": FEATURES}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        out["sqlite_load_s"] = fill_sqlite(folder, frame)
        stats._CACHE.clear()  # cold: nothing calibrated for this window size yet, as in a new deployment
        start = time.perf_counter()
        report = monitor(reference, folder, window=rows)
        out["sqlite_report_s"] = time.perf_counter() - start
        assert report.window["rows"] == rows
        out["sqlite_file_mb"] = capture.database(folder).stat().st_size / 1e6
        out["parts"] = report_parts(reference, folder, rows)
        out["duckdb_load_s"], path = fill_duckdb(folder, frame)
        import duckdb

        stats._CACHE.clear()
        start = time.perf_counter()
        con = duckdb.connect(str(path), read_only=True)
        live = con.execute(f"SELECT * FROM captures LIMIT {rows}").fetchdf()
        drift(reference, live)
        out["duckdb_report_s"] = time.perf_counter() - start
        out["duckdb_file_mb"] = path.stat().st_size / 1e6
    return out


def report_parts(reference: dict, folder: Path, rows: int) -> dict:
    """Where the report's time goes: reading the window, the thresholds (cold), the tests; and SQLite's floor."""
    kinds = read_kinds(reference)
    parts = {}
    start = time.perf_counter()
    frame = CaptureStore(folder).columns(rows, list(kinds), kinds=kinds, version="1", endpoints=MODEL_ENDPOINTS,
                                         outcomes=True)
    parts["read the window (CaptureStore.columns)"] = time.perf_counter() - start
    stats._CACHE.clear()
    start = time.perf_counter()
    for spec in reference["features"]:
        stats.calibrate(spec, rows, reference["alpha"])
    parts["calibrate the thresholds (cold)"] = time.perf_counter() - start
    start = time.perf_counter()
    drift(reference, frame)
    parts["bin and test (thresholds cached)"] = time.perf_counter() - start
    # SQLite decoding the same cells without handing them to anyone: what no reader of this file can beat
    terms = [f"sum(CAST({capture.quote(capture.FEATURE_PREFIX + f['name'])} AS {'REAL' if f['kind'] == 'numeric' else 'TEXT'}) "
             "IS NOT NULL)" for f in reference["features"]]
    con = sqlite3.connect(f"file:{capture.database(folder)}?mode=ro", uri=True)
    start = time.perf_counter()
    con.execute(f"SELECT {', '.join(terms)} FROM captures WHERE status BETWEEN 200 AND 299 AND raw IS NULL").fetchone()
    parts["floor: SQLite scanning the same cells"] = time.perf_counter() - start
    con.close()
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each writer-cost loop")
    parser.add_argument("--work-us", type=float, default=300.0,
                        help="CPU per request standing in for the front's proxying (300 µs ≈ 3,300 req/s)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    options = parser.parse_args()
    print(f"# bench_capture: python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at the start")
    if "writer" in options.parts:
        print(f"record() on the event loop: {record_cost():.0f} ns per call")
        print(f"\nwriter cost ({options.seconds:g} s per loop, {options.work_us:g} µs of front work per 1-row request):")
        print("| capture | loop requests/s | slowdown | dropped |\n|---|---:|---:|---:|")
        for r in writer_cost(options.seconds, options.work_us):
            print(f"| {r['capture']} | {r['requests_per_s']:,.0f} | {r['slowdown']:+.1%} | {r['dropped']} |")
    if "concurrency" in options.parts:
        with tempfile.TemporaryDirectory() as folder:
            print("\nsecond process reads while the writer holds the store:", concurrent_reader(Path(folder)))
    if "report" in options.parts:
        r = report_time(options.rows)
        print(f"\nreport on {r['rows']:,} rows x {r['features']} features (cold thresholds):")
        print("| store | load (setup) s | report s | file MB |\n|---|---:|---:|---:|")
        for store in ("sqlite", "duckdb"):
            print(f"| {store} | {r[store + '_load_s']:.1f} | {r[store + '_report_s']:.2f} | {r[store + '_file_mb']:.0f} |")
        print("\nthe SQLite report's parts, measured apart:\n| part | s |\n|---|---:|")
        for part, seconds in r["parts"].items():
            print(f"| {part} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
