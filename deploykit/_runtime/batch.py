"""Batch scoring with the served model: the same schema check, the same model, a table at a time.

This lives in the served runtime so the image can do it too (``docker run IMAGE batch IN OUT``); the
notebook side (:func:`deploykit.batch`) adds engines (Dask) and the model card's record.

A run reads the source in chunks of ``chunk_rows`` rows. Each chunk is checked with the cell rules of the
service's own :class:`~.schema.InstanceValidator`, a column at a time (:mod:`.batchcheck`), or, for a
column type it does not cover, a block of rows at a time (:func:`validate`), a block that fails being
checked row by row; either way every problem is reported with its row number, column and the service's
words. Rows that pass are predicted (and explained) in one call; rows that fail go to the rejects file
(``row``, ``column``, ``problem``; a row with two problems has two lines). Nothing is lost: every input
row is in the output or in the rejects.

Each finished chunk is written as its own part file, then marked done. An interrupted run, started
again with the same package, source, destination and chunk size, skips the chunks marked done and
produces the same output as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import batchcheck, batchio
from .errors import InputError

BLOCK_ROWS = 1000  # rows per validator call: large enough to be cheap, small enough to recheck a bad block
ROW, PREDICTION, SHAP = "row", "prediction", "shap_"
STATE_FORMAT = 1


@dataclass
class Chunk:
    index: int
    first_row: int
    table: Any  # pyarrow.Table
    text: bool  # cells are text (CSV): convert the model's columns before validating


@dataclass
class Scored:
    index: int
    rows: int
    output: Any  # pyarrow.Table: the source columns of the good rows, then row, prediction (and shap_*)
    rejects: Any  # pyarrow.Table: row, column, problem
    rejected_rows: int


@dataclass
class BatchResult:
    """What a batch run did; ``rows == scored + rejected_rows``."""

    source: str
    destination: str
    rejects: str
    rows: int
    scored: int
    rejected_rows: int
    chunks: int
    resumed_chunks: int
    seconds: float
    engine: str
    explain: bool = False
    package: dict = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def __repr__(self) -> str:
        resumed = f" ({self.resumed_chunks} resumed)" if self.resumed_chunks else ""
        return (f"<BatchResult {self.rows:,} rows → {self.scored:,} scored, {self.rejected_rows:,} rejected · "
                f"{self.chunks} chunks{resumed} · {self.engine} · {self.seconds:.1f} s · {self.destination}>")


# -- one chunk -----------------------------------------------------------------------------------------
def validate(validator, values: dict[str, list], first_row: int) -> tuple[list[int], dict[str, list], list[dict]]:
    """(positions of the good rows, their checked values by column, one reject per problem), row by row:
    the fallback for the chunks :func:`.batchcheck.check` does not cover (nested, temporal, decimal or
    binary columns, or a cell rule that raised)."""
    names = validator.names
    total = len(values[names[0]]) if names else 0
    good, checked, rejects = [], {name: [] for name in names}, []
    for start in range(0, total, BLOCK_ROWS):
        stop = min(total, start + BLOCK_ROWS)
        rows = [dict(zip(names, cells)) for cells in zip(*(values[name][start:stop] for name in names))]
        try:
            block = validator.columns_of(rows)
            good.extend(range(start, stop))
        except Exception:  # noqa: BLE001 - an InputError, or a value the validator cannot handle: row by row
            keep = []
            for i, row in enumerate(rows):
                try:
                    validator.columns_of([row])
                    keep.append(i)
                except InputError as exc:
                    rejects.extend(_rejects(exc, first_row + start + i))
                except Exception as exc:  # noqa: BLE001 - the row is rejected, not the whole run
                    rejects.append({"row": first_row + start + i, "column": None,
                                    "problem": f"the schema check failed on this row: {type(exc).__name__}: {exc}"})
            block = validator.columns_of([rows[i] for i in keep]) if keep else {name: [] for name in names}
            good.extend(start + i for i in keep)
        for name in names:
            checked[name].extend(block[name])
    return good, checked, rejects


def _rejects(exc: InputError, row: int) -> list[dict]:
    details = exc.details or [{"column": None, "problem": str(exc)}]
    return [{"row": row, "column": d.get("column"), "problem": d.get("problem") or str(exc)} for d in details]


def score_chunk(runtime, chunk: Chunk, *, explain: bool = False) -> Scored:
    """Validate, predict and (optionally) explain one chunk with a loaded :class:`~.model.ModelRuntime`."""
    import numpy as np
    import pyarrow as pa

    checked_chunk = batchcheck.check(runtime.validator, chunk.table, chunk.first_row, text=chunk.text)
    if checked_chunk is None:  # a column of a type the columnar check does not cover: row by row
        values = batchio.cells(chunk.table, runtime.manifest.schema, text=chunk.text)
        checked_chunk = validate(runtime.validator, values, chunk.first_row)
    good, checked, rejects = checked_chunk
    good = np.asarray(good, dtype="int64")
    output = chunk.table if len(good) == chunk.table.num_rows else chunk.table.take(pa.array(good))
    output = output.append_column(ROW, pa.array(chunk.first_row + good))
    frame = runtime.validator.build(checked)
    predictions = runtime.model.predict(runtime.to_input(frame)) if len(good) else np.array([])
    output = output.append_column(PREDICTION, pa.array(np.asarray(predictions)))
    if explain:
        output = _with_shap(runtime, frame, output, len(good))
    rejects_table = pa.table({
        ROW: pa.array([r[ROW] for r in rejects], pa.int64()),
        "column": pa.array([r["column"] for r in rejects], pa.string()),
        "problem": pa.array([r["problem"] for r in rejects], pa.string()),
    })
    return Scored(chunk.index, chunk.table.num_rows, output, rejects_table, len({r[ROW] for r in rejects}))


def _with_shap(runtime, frame, output, rows: int):
    import numpy as np
    import pyarrow as pa

    names = runtime.validator.names
    if rows:
        explained = runtime.explain(frame)
        values, base = np.asarray(explained["values"], dtype="float64"), np.asarray(explained["base_values"], dtype="float64")
    else:
        values, base = np.zeros((0, len(names))), np.zeros(0)
    for j, name in enumerate(names):
        output = output.append_column(f"{SHAP}{name}", pa.array(values[:, j]))
    return output.append_column(f"{SHAP}base_value", pa.array(base))


class LocalScorer:
    """Scores chunks in this process, ``threads`` at a time: while one chunk is in the model (which
    releases the GIL for most of a tree ensemble's work), the next one is validated."""

    engine = "local"

    def __init__(self, runtime, *, explain: bool = False, threads: int = 2) -> None:
        self.runtime, self.explain, self.threads = runtime, explain, max(1, threads)

    def __call__(self, chunks: Iterable[Chunk]) -> Iterator[Scored]:
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="deploykit-batch")
        pending: deque = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(score_chunk, self.runtime, chunk, explain=self.explain))
                if len(pending) > self.threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


_WORKER: dict = {}


def _load_in_worker(model_dir: str) -> None:
    from .model import ModelRuntime

    _WORKER["runtime"] = ModelRuntime.load(model_dir).loaded()


def _score_in_worker(chunk: Chunk, explain: bool) -> Scored:
    return score_chunk(_WORKER["runtime"], chunk, explain=explain)


class ProcessScorer:
    """Scores chunks in ``workers`` processes of this machine, each loading the package once: a model's
    ``predict`` usually runs on one core, so one process scores at most one core's worth of rows."""

    engine = "local"

    def __init__(self, model_dir: str | Path, *, explain: bool = False, workers: int = 2) -> None:
        self.model_dir, self.explain, self.workers = str(model_dir), explain, workers

    def __call__(self, chunks: Iterable[Chunk]) -> Iterator[Scored]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold threads (a notebook kernel, a Dask client) that fork would copy half-way
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_load_in_worker, initargs=(self.model_dir,))
        pending: deque = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(_score_in_worker, chunk, self.explain))
                if len(pending) > 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# -- a run ---------------------------------------------------------------------------------------------
Scorer = Callable[[Iterable[Chunk]], Iterator[Scored]]


def run(scorer: Scorer, source: str | Path, destination: str | Path, *, schema: dict, package: dict,
        chunk_rows: int = 100_000, explain: bool = False, progress: bool = True, engine: str = "local") -> BatchResult:
    """Score ``source`` into ``destination`` chunk by chunk with ``scorer``, resuming a run left unfinished."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}: give a positive number of rows per chunk")
    started = time.perf_counter()
    src, dest = batchio.Source.open(source), batchio.Destination.of(destination)
    _check_columns(src.columns(), schema, explain)
    identity = {"format": STATE_FORMAT, "package": package, "source": src.fingerprint(), "chunk_rows": chunk_rows,
                "explain": explain, "destination": dest.kind}
    done = _resume_or_start(dest, identity)
    bar = ProgressBar(src.rows(), enabled=progress)
    totals = {"rows": 0, "scored": 0, "rejected": 0, "chunks": 0}

    def todo() -> Iterator[Chunk]:
        for index, table in enumerate(src.chunks(chunk_rows)):
            totals["chunks"] = index + 1
            if index in done:
                _count(totals, bar, done[index])
                continue
            yield Chunk(index, index * chunk_rows, table, src.kind == batchio.CSV)

    try:
        for scored in scorer(todo()):
            _count(totals, bar, _commit(dest, scored))
    finally:
        bar.close()
    _assemble(dest, totals["chunks"], schema)
    return BatchResult(str(src.path), str(dest.path), str(dest.rejects), totals["rows"], totals["scored"],
                       totals["rejected"], totals["chunks"], len(done), time.perf_counter() - started, engine,
                       explain, package)


def _check_columns(columns: list[str], schema: dict, explain: bool) -> None:
    missing = [c["name"] for c in schema["columns"] if c["name"] not in columns]
    if missing:
        raise InputError(f"the source lacks column(s) the model needs: {', '.join(missing[:10])}; "
                         f"it has {', '.join(columns[:10])}")
    taken = [c for c in columns if c in (ROW, PREDICTION) or (explain and c.startswith(SHAP))]
    if taken:
        raise InputError(f"the source already has column(s) {', '.join(taken)}, which batch scoring writes; "
                         "rename them in the source")


def _count(totals: dict, bar, counts: dict) -> None:
    totals["rows"] += counts["rows"]
    totals["scored"] += counts["scored"]
    totals["rejected"] += counts["rejected_rows"]
    bar.advance(counts["rows"], counts["rejected_rows"])


def _marker(dest: batchio.Destination, index: int) -> Path:
    return dest.state / f"done-{index:05d}.json"


def _commit(dest: batchio.Destination, scored: Scored) -> dict:
    """Write a chunk's parts, then its done marker: a chunk without its marker is redone on resume."""
    batchio.write_table(scored.output, dest.part(scored.index), dest.kind)
    batchio.write_table(scored.rejects, dest.rejects_part(scored.index), dest.kind)
    counts = {"rows": scored.rows, "scored": scored.output.num_rows, "rejected_rows": scored.rejected_rows}
    _marker(dest, scored.index).write_text(json.dumps(counts))
    return counts


def _resume_or_start(dest: batchio.Destination, identity: dict) -> dict[int, dict]:
    """The finished chunks of an earlier run of the same job; anything else is cleared away."""
    run_file = dest.state / "run.json"
    if run_file.is_file() and json.loads(run_file.read_text()) == identity:
        return {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in dest.state.glob("done-*.json")}
    shutil.rmtree(dest.state, ignore_errors=True)
    if dest.kind == batchio.PARTS and dest.path.is_dir():
        for stale in dest.path.glob("part-*.parquet"):
            stale.unlink()
    dest.state.mkdir(parents=True)
    run_file.write_text(json.dumps(identity))
    return {}


def _assemble(dest: batchio.Destination, chunks: int, schema: dict) -> None:
    import pyarrow as pa

    empty_rejects = pa.table({ROW: pa.array([], pa.int64()), "column": pa.array([], pa.string()),
                              "problem": pa.array([], pa.string())})
    rejects_kind = batchio.CSV if dest.kind == batchio.CSV else batchio.PARQUET
    batchio.concatenate([dest.rejects_part(i) for i in range(chunks)], dest.rejects, rejects_kind, empty_rejects)
    if dest.kind == batchio.PARTS:
        dest.path.mkdir(parents=True, exist_ok=True)
    else:
        empty = pa.table({ROW: pa.array([], pa.int64()), PREDICTION: pa.array([], pa.float64())})
        batchio.concatenate([dest.part(i) for i in range(chunks)], dest.path, dest.kind, empty)
    shutil.rmtree(dest.state, ignore_errors=True)


class ProgressBar:
    """One line on stderr, redrawn at most five times a second (a line per 10% where it cannot redraw)."""

    def __init__(self, total: int | None, *, enabled: bool = True, stream=None, redraw: bool | None = None) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream or sys.stderr
        self.rows = self.rejected = 0
        self.started = self.drawn = time.perf_counter()
        if redraw is None:  # a terminal or a notebook's output area can redraw a line with \r
            redraw = getattr(self.stream, "isatty", lambda: False)() or "ipykernel" in sys.modules
        self.redraws = redraw
        self.next_tenth = 1

    def advance(self, rows: int, rejected: int) -> None:
        self.rows += rows
        self.rejected += rejected
        now = time.perf_counter()
        if not self.enabled:
            return
        if self.redraws and now - self.drawn >= 0.2:
            self.drawn = now
            print("\r" + self.line(), end="", file=self.stream, flush=True)
        elif not self.redraws and self.total and self.rows * 10 >= self.next_tenth * self.total:
            self.next_tenth = self.rows * 10 // self.total + 1
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        rate = self.rows / max(time.perf_counter() - self.started, 1e-9)
        if self.total:
            share = min(1.0, self.rows / self.total)
            bar = "█" * int(share * 20) + "░" * (20 - int(share * 20))
            head = f"  batch [{bar}] {share:4.0%} {self.rows:,}/{self.total:,} rows"
        else:
            head = f"  batch {self.rows:,} rows"
        return f"{head} · {rate:,.0f} rows/s · {self.rejected:,} rejected"

    def close(self) -> None:
        finished = self.total is not None and self.rows >= self.total
        if self.enabled and (self.redraws or not finished):  # else the last tenth already printed this line
            print(("\r" if self.redraws else "") + self.line(), file=self.stream, flush=True)


# -- the image's `batch` command -----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``batch IN OUT [--explain] [--chunk-rows N]`` inside the image: score with the packaged model."""
    import argparse

    from .model import ModelRuntime

    parser = argparse.ArgumentParser(prog="batch", description="Score a CSV or Parquet file with this image's model.")
    parser.add_argument("source", help="a .csv or .parquet file, or a folder of .parquet parts")
    parser.add_argument("destination", help="a .csv or .parquet file, or a folder for .parquet parts")
    parser.add_argument("--explain", action="store_true", help="add SHAP columns (shap_<column>)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows per chunk (default: 100000)")
    parser.add_argument("--workers", type=int, default=1, help="processes scoring chunks (default: 1, this one)")
    args = parser.parse_args(argv)
    runtime = ModelRuntime.load()
    m = runtime.manifest
    package = {"name": m["name"], "version": str(m["version"]), "model_sha256": m["artifacts"]["model"]["sha256"]}
    scorer = (ProcessScorer(runtime.directory, explain=args.explain, workers=args.workers) if args.workers > 1
              else LocalScorer(runtime, explain=args.explain))
    try:
        result = run(scorer, args.source, args.destination,
                     schema=m["schema"], package=package, chunk_rows=args.chunk_rows, explain=args.explain)
    except (InputError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict()))
    return 0
