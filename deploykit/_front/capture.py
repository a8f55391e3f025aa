"""Recording served predictions in the deployment's capture database, off the request path.

Runs inside the front, so it uses the standard library only (and orjson, when installed, to parse
bodies). ``CaptureWriter.record`` is called on the event loop for every answered request: it samples,
appends to a bounded in-memory queue and returns (well under a microsecond of work when capture is
off, about one when on). A background thread parses the bodies and writes them to SQLite in batches.
A full queue drops the capture and counts it; capture never fails a request.

The format (the host-side reader, :mod:`deploykit._monitor.store`, imports these definitions):
one SQLite file, ``STATE_DIR/capture.sqlite``, in WAL mode so that a reader in another process
reads while the front writes.

``captures``: one row per instance of a request, keyed by ``(request_id, row)``; ``row`` is the
instance's index in the request's ``"instances"`` list::

    seq            INTEGER PRIMARY KEY AUTOINCREMENT   insertion order ("the last N rows")
    request_id     TEXT     the x-request-id the client got back
    row            INTEGER  0 for the first instance
    time           REAL     epoch seconds the front received the request
    version, variant, endpoint, status
    prediction     the label or value answered for this row (/predict; /predict_proba: its argmax class)
    probabilities  JSON list of class probabilities (/predict_proba)
    raw            the first RAW_LIMIT bytes of a body that was not answered 2xx or could not be read
    "x.<column>"   one column per input column, added as answered requests name them

``outcomes``: the known label of a captured row, ``(request_id, row) -> y_true, time``. An outcome
addresses one row: ``"ID"`` (a single-row request, or row 0), ``"ID#ROW"``, or ``("ID", ROW)``; a bare
``"ID"`` with a list of labels gives rows 0, 1, ... of that request (see :func:`outcome_rows`).
"""

from __future__ import annotations

import collections
import json
import random
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # orjson parses a 100-row body about 4x faster; the front's image has it, the standard library is the fallback
    from orjson import JSONDecodeError as _OrjsonError, loads as _orjson_loads
except ImportError:  # pragma: no cover - a front run without orjson installed
    _orjson_loads, _OrjsonError = None, ValueError

FILENAME = "capture.sqlite"
FORMAT = 1
FEATURE_PREFIX = "x."
RAW_LIMIT = 4096
MAX_FEATURES = 1000  # SQLite allows 2000 columns; a schema wider than this keeps its first 1000
MAX_BODY = 1 << 20  # bodies over 1 MiB are not captured (counted as dropped)
CAPTURED_ENDPOINTS = frozenset({"/predict", "/predict_proba", "/explain"})
META_COLUMNS = ("request_id", "row", "time", "version", "variant", "endpoint", "status",
                "prediction", "probabilities", "raw")

SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL, row INTEGER NOT NULL, time REAL NOT NULL,
    version TEXT, variant TEXT, endpoint TEXT, status INTEGER,
    prediction, probabilities TEXT, raw TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS captures_key ON captures (request_id, row);
CREATE INDEX IF NOT EXISTS captures_time ON captures (time);
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT NOT NULL, row INTEGER NOT NULL, y_true, time REAL NOT NULL,
    PRIMARY KEY (request_id, row));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def database(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILENAME


def connect(path: str | Path, *, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection in WAL mode with the tables made; writers and readers both open through this."""
    con = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")  # a capture may be lost in a power cut, never corrupted
    con.executescript(SCHEMA)
    con.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (str(FORMAT),))
    return con


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def feature_columns(con: sqlite3.Connection) -> list[str]:
    """The input columns captured so far, without their ``x.`` prefix, in the order they were added."""
    names = [r[1] for r in con.execute("PRAGMA table_info(captures)")]
    return [n[len(FEATURE_PREFIX):] for n in names if n.startswith(FEATURE_PREFIX)]


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"15m"``, ``"12h"``, ``"30d"`` or ``"2w"``."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"cannot read {text!r} as a duration; write a number and a unit: 90s, 15m, 12h, 30d, 2w")
    return float(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class Retention:
    """How much capture to keep: rows younger than ``max_age`` seconds, and at most ``max_rows`` rows
    (either may be None: no limit of that kind)."""

    max_age: float | None = 30 * 86400.0
    max_rows: int | None = 5_000_000

    @classmethod
    def parse(cls, value: Any) -> Retention:
        """``None`` (30 days, 5M rows), a duration ``"30d"``, a row count ``1_000_000``, a dict
        ``{"max_age": "7d", "max_rows": 100000}``, or a Retention."""
        if value is None:
            return cls()
        if isinstance(value, Retention):
            return value
        if isinstance(value, str):
            return cls(max_age=parse_duration(value), max_rows=None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return cls(max_age=None, max_rows=value)
        if isinstance(value, dict) and set(value) <= {"max_age", "max_rows"}:
            age, rows = value.get("max_age"), value.get("max_rows")
            return cls(max_age=parse_duration(age) if isinstance(age, str) else age,
                       max_rows=int(rows) if rows is not None else None)
        raise ValueError(f"capture retention {value!r} is not understood; give a duration like '30d', a row count, "
                         "or {'max_age': '30d', 'max_rows': 1000000}")

    def enforce(self, con: sqlite3.Connection, now: float | None = None) -> int:
        """Delete captures (and outcomes) past the limits; return how many capture rows went."""
        deleted = 0
        if self.max_age is not None:
            cutoff = (now or time.time()) - self.max_age
            deleted += con.execute("DELETE FROM captures WHERE time < ?", (cutoff,)).rowcount
            con.execute("DELETE FROM outcomes WHERE time < ?", (cutoff,))
        if self.max_rows is not None:
            deleted += con.execute("DELETE FROM captures WHERE seq <= (SELECT max(seq) FROM captures) - ?",
                                   (self.max_rows,)).rowcount
        return deleted


# -- outcomes: one addressing rule for the front's POST /outcomes and Deployment.log_outcomes ----------
def outcome_rows(request_ids: list, y_true: list) -> list[tuple[str, int, Any]]:
    """``(request_id, row, y_true)`` triples from parallel lists.

    An id is ``"ID"`` (row 0), ``"ID#ROW"``, or a ``(ID, ROW)`` pair. A bare ``"ID"`` whose label is a
    list addresses rows 0, 1, ... of that request, one label each. Raises ValueError naming the entry.
    """
    if len(request_ids) != len(y_true):
        raise ValueError(f"got {len(request_ids)} request ids but {len(y_true)} labels; give one label per id")
    triples = []
    for i, (rid, label) in enumerate(zip(request_ids, y_true)):
        if isinstance(rid, (tuple, list)) and len(rid) == 2:
            triples.append((_id(rid[0], i), _row(rid[1], i), _label(label, i)))
        elif isinstance(label, (list, tuple)):
            triples += [(_id(rid, i), r, _label(v, i)) for r, v in enumerate(label)]
        else:
            text = _id(rid, i)
            head, sep, tail = text.rpartition("#")
            triples.append((head, int(tail), _label(label, i)) if sep and tail.isdigit() else (text, 0, _label(label, i)))
    return triples


def _id(value: Any, i: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"request id #{i} is {value!r}; give the x-request-id string the response carried")
    return value


def _row(value: Any, i: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"row of request id #{i} is {value!r}; give the instance's index in the request (0, 1, ...)")
    return value


def _label(value: Any, i: int) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    raise ValueError(f"label #{i} is {type(value).__name__}; give a number or a string")


def parse_outcomes_body(body: bytes) -> list[tuple[str, int, Any]]:
    """The triples of a ``POST /outcomes`` body ``{"request_ids": [...], "y_true": [...]}``."""
    try:
        payload = json.loads(body)
        ids, labels = payload["request_ids"], payload["y_true"]
    except (ValueError, TypeError, KeyError):
        raise ValueError('the body must be JSON like {"request_ids": ["<x-request-id>", ...], "y_true": [1, ...]}') from None
    if not isinstance(ids, list) or not isinstance(labels, list):
        raise ValueError('"request_ids" and "y_true" must both be lists')
    return outcome_rows(ids, labels)


def write_outcomes(con: sqlite3.Connection, triples: list[tuple[str, int, Any]], now: float | None = None) -> int:
    """Store outcomes (a label logged again replaces the previous one); return how many were written."""
    stamp = now or time.time()
    con.execute("BEGIN IMMEDIATE")
    try:
        con.executemany("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?)", [(r, i, y, stamp) for r, i, y in triples])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(triples)


# -- the writer ---------------------------------------------------------------------------------------
class CaptureWriter:
    """Samples served requests and writes them to ``STATE_DIR/capture.sqlite`` from a background thread.

    Parameters
    ----------
    state_dir : path
        The deployment's state folder (the front's ``state_dir``).
    name : str
        The deployment's name (stored in the database's meta table).
    fraction : float
        Share of requests captured, 0 to 1 (``deploy(capture=...)``); 0 starts no thread and opens no file.
    queue_size : int
        Requests waiting to be written before further ones are dropped (and counted in ``dropped``).
    retention : see :meth:`Retention.parse`
        Enforced when the writer starts and every ``retention_every`` seconds.

    Examples
    --------
    >>> writer = CaptureWriter(tmp, "churn", fraction=1.0)                       # doctest: +SKIP
    >>> writer.record(rid, time.time(), "3", "live", "/predict", 200, body, answer)  # doctest: +SKIP
    True
    >>> writer.close()                                                           # doctest: +SKIP
    """

    def __init__(self, state_dir: str | Path, name: str, fraction: float = 1.0, queue_size: int = 10_000,
                 retention: Any = None, *, batch: int = 256, interval: float = 0.05,
                 retention_every: float = 60.0) -> None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"capture fraction {fraction!r} must be between 0 (off) and 1 (every request)")
        self.name, self.fraction, self.path = name, float(fraction), database(state_dir)
        self.retention = Retention.parse(retention)
        self.batch, self.interval, self.retention_every = batch, interval, retention_every
        self.written = 0  # capture rows committed
        self._queue: collections.deque = collections.deque()
        self._limit = int(queue_size)
        self._dropped_full = 0  # counted on the event loop
        self._dropped_late = 0  # counted by the writer thread: body too large, or the write failed
        self._closing = threading.Event()
        self._busy = False
        self._thread: threading.Thread | None = None
        if self.fraction > 0:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
            self._con = connect(self.path)
            self._con.execute("INSERT OR REPLACE INTO meta VALUES ('name', ?)", (name,))
            self._columns = set(feature_columns(self._con))
            self._thread = threading.Thread(target=self._run, name=f"deploykit-capture-{name}", daemon=True)
            self._thread.start()

    @property
    def dropped(self) -> int:
        """Requests not captured although sampled: the queue was full, the body too large, or a write failed."""
        return self._dropped_full + self._dropped_late

    # -- the event loop's side: no I/O, no parsing ----------------------------------------------------
    def record(self, request_id: str, time: float, version: str, variant: str, endpoint: str, status: int,
               request_body: bytes, response_body: bytes) -> bool:
        """Queue one answered request for capture; False when it is not sampled or was dropped."""
        if self._thread is None or endpoint not in CAPTURED_ENDPOINTS or self._closing.is_set():
            return False
        if self.fraction < 1.0 and random.random() >= self.fraction:
            return False
        if len(self._queue) >= self._limit:
            self._dropped_full += 1
            return False
        self._queue.append((request_id, time, version, variant, endpoint, status, request_body, response_body))
        return True

    def record_outcomes(self, triples: list[tuple[str, int, Any]]) -> bool:
        """Queue outcomes parsed by :func:`parse_outcomes_body` (the front's ``POST /outcomes``)."""
        if self._thread is None or self._closing.is_set() or len(self._queue) >= self._limit:
            return False
        self._queue.append((triples,))
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is written; False on timeout (tests and clean shutdowns)."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < deadline:
            time.sleep(0.005)
        return not (self._queue or self._busy)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread and close the database."""
        if self._thread is None:
            return
        self._closing.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._con.close()
        self._thread = None

    # -- the writer thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        next_retention = 0.0
        while True:
            items = self._take()
            if items:
                self._write(items)
            elif self._closing.is_set():
                break
            else:
                self._closing.wait(self.interval)
            if time.monotonic() >= next_retention:
                next_retention = time.monotonic() + self.retention_every
                try:
                    self.retention.enforce(self._con)
                except sqlite3.Error:
                    pass  # busy or full disk: the next round tries again; capture goes on

    def _take(self) -> list:
        items, queue = [], self._queue
        self._busy = bool(queue)
        while queue and len(items) < self.batch:
            items.append(queue.popleft())
        return items

    def _write(self, items: list) -> None:
        rows, outcomes, keys = [], [], {}
        for i, item in enumerate(items):
            if len(item) == 1:
                outcomes += item[0]
            else:
                rows += self._rows(item, keys)
            if i % 16 == 15:
                time.sleep(0)  # hand the GIL to the event loop if it waits: parsing must not delay requests
        try:
            self._add_columns(keys)
            names = [k for k in keys if k in self._columns]
            self._insert(rows, names)
            if outcomes:
                write_outcomes(self._con, outcomes)
            self.written += len(rows)
        except (sqlite3.Error, ValueError, OverflowError):
            self._dropped_late += sum(1 for item in items if len(item) > 1)
        finally:
            self._busy = False

    def _rows(self, item: tuple, keys: dict) -> list[tuple]:
        request_id, stamp, version, variant, endpoint, status, body, response = item
        meta = (request_id, stamp, version, variant, endpoint, status)
        if len(body) > MAX_BODY:
            self._dropped_late += 1
            return []
        instances = _instances(body) if 200 <= status < 300 else None
        if instances is None:
            return [(meta, 0, None, None, body[:RAW_LIMIT].decode("utf-8", "replace"), {})]
        for instance in instances:
            keys.update(dict.fromkeys(instance))
        outputs = _outputs(endpoint, response, len(instances))
        return [(meta, i, prediction, proba, None, instance)
                for i, (instance, (prediction, proba)) in enumerate(zip(instances, outputs))]

    def _add_columns(self, keys: dict) -> None:
        for key in keys:
            if key not in self._columns and len(self._columns) < MAX_FEATURES:
                self._con.execute(f"ALTER TABLE captures ADD COLUMN {quote(FEATURE_PREFIX + key)}")
                self._columns.add(key)

    def _insert(self, rows: list[tuple], names: list[str]) -> None:
        columns = ", ".join([*META_COLUMNS, *(quote(FEATURE_PREFIX + n) for n in names)])
        marks = ", ".join("?" * (len(META_COLUMNS) + len(names)))
        values = [(m[0], row, m[1], m[2], m[3], m[4], m[5], _cell(prediction), proba, raw,
                   *_cells(tuple(map(features.get, names))))
                  for m, row, prediction, proba, raw, features in rows]
        self._con.execute("BEGIN IMMEDIATE")
        try:
            self._con.executemany(f"INSERT OR IGNORE INTO captures ({columns}) VALUES ({marks})", values)
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise


def _loads(data: bytes) -> Any:
    """JSON from bytes: orjson when installed, the standard parser for what orjson refuses (NaN, Infinity)."""
    if _orjson_loads is not None:
        try:
            return _orjson_loads(data)
        except _OrjsonError:
            pass
    return json.loads(data)


def _instances(body: bytes) -> list[dict] | None:
    try:
        instances = _loads(body)["instances"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(instances, list) and all(isinstance(i, dict) for i in instances):
        return instances
    return None


def _outputs(endpoint: str, response: bytes, n: int) -> list[tuple[Any, str | None]]:
    """Per row: the prediction, and the probabilities as JSON text (``/predict_proba``)."""
    nothing = [(None, None)] * n
    try:
        payload = _loads(response)
    except (ValueError, TypeError):
        return nothing
    if not isinstance(payload, dict):
        return nothing
    predictions, probabilities, classes = payload.get("predictions"), payload.get("probabilities"), payload.get("classes")
    if isinstance(predictions, list) and len(predictions) == n:
        return [(p, None) for p in predictions]
    if isinstance(probabilities, list) and len(probabilities) == n and isinstance(classes, list):
        return [(_argmax(classes, p), json.dumps(p)) for p in probabilities]
    return nothing


def _argmax(classes: list, probabilities: Any) -> Any:
    if not isinstance(probabilities, list) or len(probabilities) != len(classes) or not probabilities:
        return None
    try:
        return classes[max(range(len(probabilities)), key=probabilities.__getitem__)]
    except TypeError:
        return None


_PLAIN = frozenset({float, str, bool, type(None)})  # stored by SQLite as they are
_INT64 = (-(1 << 63), 1 << 63)


def _cells(values: tuple) -> tuple:
    """A row's values as SQLite stores them (see :func:`_cell`), checked a row at a time: the usual row of
    numbers and text goes through as it is, with no call per value."""
    types = set(map(type, values))
    if types <= _PLAIN:
        return values
    if types <= _PLAIN | {int} and all(_INT64[0] <= v < _INT64[1] for v in values if type(v) is int):
        return values
    return tuple(map(_cell, values))


def _cell(value: Any) -> Any:
    """A JSON value as SQLite stores it: numbers and text as they are, objects and lists as JSON text."""
    if isinstance(value, int) and not _INT64[0] <= value < _INT64[1]:
        return float(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value
