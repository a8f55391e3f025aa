"""Reading a deployment's capture database on the host: windows of rows, outcomes, Parquet export.

The front writes ``STATE_DIR/capture.sqlite`` (format: :mod:`deploykit._front.capture`); this side
opens the same file from another process while the front keeps writing (SQLite's WAL mode lets one
writer and many readers work at once). Large windows are read with the ADBC SQLite driver straight
into Arrow when it is installed (``pip install 'deploykit[monitor]'``): about 2 s for a million rows
of 20 features, against 8 s through the standard library's row tuples, which remain the fallback.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._front import capture
from ..exceptions import ConfigError

ADBC_BATCH_ROWS = 1 << 30
META = ["request_id", "row", "time", "version", "variant", "endpoint", "status", "prediction", "probabilities"]


@dataclass(frozen=True)
class Window:
    """Which captured rows a report covers: the last ``rows`` rows, and/or those with ``start <= time < end``.

    Made by :meth:`Window.parse` from what users pass as ``window=``.
    """

    rows: int | None = None
    start: float | None = None
    end: float | None = None

    @classmethod
    def parse(cls, window: Any, now: float | None = None) -> Window:
        """``None`` (everything), ``600`` (the last 600 rows), ``"1h"`` / ``"7d"`` (that long back from now),
        ``(start, end)`` (epoch seconds, datetimes or ISO strings; either may be None), a dict with keys
        ``rows``, ``last``, ``start``, ``end``, or a Window."""
        if window is None or isinstance(window, Window):
            return window or cls()
        if isinstance(window, int) and not isinstance(window, bool):
            if window <= 0:
                raise ConfigError(f"window={window} rows: give a positive number of rows, e.g. window=1000")
            return cls(rows=window)
        if isinstance(window, str):
            return cls(start=(now or time.time()) - _duration(window))
        if isinstance(window, (tuple, list)) and len(window) == 2:
            return cls(start=_epoch(window[0]), end=_epoch(window[1]))
        if isinstance(window, dict) and set(window) <= {"rows", "last", "start", "end"}:
            start = (now or time.time()) - _duration(window["last"]) if window.get("last") else _epoch(window.get("start"))
            return cls(rows=window.get("rows"), start=start, end=_epoch(window.get("end")))
        raise ConfigError(f"window={window!r} is not understood; give a row count (600), a duration ('1h', '7d'), "
                          "or a (start, end) pair of datetimes")


def _duration(text: str) -> float:
    try:
        return capture.parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"window: {exc}") from None


def _epoch(value: Any) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    if isinstance(value, pd.Timestamp):
        return value.timestamp()
    raise ConfigError(f"cannot read {value!r} as a time; give epoch seconds, a datetime or an ISO string")


class CaptureStore:
    """A deployment's captured predictions and outcomes, opened for reading from the host.

    Parameters
    ----------
    path : path
        The deployment's state folder, or the ``capture.sqlite`` file itself.

    Examples
    --------
    >>> store = CaptureStore(state_dir)                         # doctest: +SKIP
    >>> store.rows(window=600).shape                            # doctest: +SKIP
    (600, 17)
    >>> store.log_outcomes(["3f2c...", "9ab1...#2"], [1, 0])    # doctest: +SKIP
    2
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path = path if path.suffix == ".sqlite" else capture.database(path)
        if not self.path.exists():
            raise ConfigError(f"no capture database at {self.path}; deploy with capture=1.0 (or a fraction) and "
                              "send some requests first")

    def __repr__(self) -> str:
        return f"<CaptureStore {self.path}>"

    # -- reading --------------------------------------------------------------------------------------
    def features(self) -> list[str]:
        """The input columns captured so far."""
        with self._sqlite() as con:
            return capture.feature_columns(con)

    def count(self, *, answered: bool = True) -> int:
        where = " WHERE status BETWEEN 200 AND 299 AND raw IS NULL" if answered else ""
        with self._sqlite() as con:
            return con.execute(f"SELECT count(*) FROM captures{where}").fetchone()[0]

    def rows(self, window: Any = None, *, version: str | None = None, variant: str | None = None,
             endpoint: str | None = None, answered: bool = True, outcomes: bool = False,
             kinds: dict[str, str] | None = None) -> pd.DataFrame:
        """The captured rows of a window, oldest first: the columns in ``META``, then one per input column.

        Parameters
        ----------
        window : see :meth:`Window.parse`
        version, variant, endpoint : str, optional
            Keep only rows answered by this version / variant ("live", "candidate") / endpoint.
        answered : bool
            Only rows the model answered (2xx); False includes rejected requests (their ``raw`` body is not read).
        outcomes : bool
            Add ``y_true`` (null where no outcome was logged) and ``outcome_time``.
        kinds : dict, optional
            ``{column: "numeric" | "text"}`` reads a column as float (anything else becomes null) or as text;
            ``"prediction"`` and ``"y_true"`` may be named too. Unnamed columns are read as stored.
        """
        window = Window.parse(window)
        kinds = kinds or {}
        present = self.features()
        columns = [_read(f"c.{c}", kinds.get(c), alias=c) for c in META]
        columns += [_read("c." + capture.quote(capture.FEATURE_PREFIX + f), kinds.get(f), alias=_alias(f)) for f in present]
        if outcomes:
            columns += [_read("o.y_true", kinds.get("y_true"), alias="y_true"), "o.time AS outcome_time"]
        where, params = self._where(window, version, variant, endpoint, answered)
        join = " LEFT JOIN outcomes o ON o.request_id = c.request_id AND o.row = c.row" if outcomes else ""
        sql = f"SELECT {', '.join(columns)} FROM captures c{join}{where} ORDER BY c.seq DESC"
        if window.rows:
            sql += f" LIMIT {int(window.rows)}"
        frame = self._query(sql, params)
        frame = frame.iloc[::-1].reset_index(drop=True)
        return frame.rename(columns={_alias(f): f for f in present if f not in META})

    def columns(self, window: Any = None, names: list[str] | None = None, *, kinds: dict[str, str] | None = None,
                version: str | None = None, variant: str | None = None, endpoints: tuple[str, ...] | None = None,
                outcomes: bool = False) -> pd.DataFrame:
        """Some columns of a window's answered rows, typed: what a report over a million rows reads.

        Unlike :meth:`rows`, only ``seq``, ``time`` and the columns named are read (input columns, or
        ``"prediction"``), and each is typed by ``kinds`` as it leaves SQLite: "numeric" as float64 (nulls
        NaN), "text" as a pandas Categorical (no Python string per cell). Names never captured are left out.

        Parameters
        ----------
        window, version, variant : as :meth:`rows`
        names : list of str
            The columns wanted.
        endpoints : tuple of str, optional
            Only rows answered by these endpoints (the report reads ``MODEL_ENDPOINTS``).
        outcomes : bool
            Add ``y_true`` (read as ``kinds["y_true"]``) and ``outcome_time``, joined in a second query
            that reads the window's labelled rows only.

        Examples
        --------
        >>> store.columns(1_000_000, ["age", "contract"], kinds={"age": "numeric", "contract": "text"}).dtypes  # doctest: +SKIP
        seq           int64
        time        float64
        age         float64
        contract   category
        dtype: object
        """
        window, kinds = Window.parse(window), kinds or {}
        present = set(self.features())
        wanted = [n for n in dict.fromkeys(names or []) if n in present or n in META]
        aliases = {n: n if n in META else _alias(n) for n in wanted if n != "time"}
        terms = ["c.seq AS seq", "c.time AS time"] + [
            _read(f"c.{n}" if n in META else "c." + capture.quote(capture.FEATURE_PREFIX + n), kinds.get(n), alias=alias)
            for n, alias in aliases.items()]
        where, params = self._where(window, version, variant, None, True, endpoints)
        sql = f"SELECT {', '.join(terms)} FROM captures c{where} ORDER BY c.seq" + (
            f" DESC LIMIT {int(window.rows)}" if window.rows else "")
        frame = _typed(self._query(sql, params, categories=True), kinds, {a: n for n, a in aliases.items()})
        if window.rows:
            frame = frame.iloc[::-1].reset_index(drop=True)
        return self._join_outcomes(frame, kinds.get("y_true"), where, params) if outcomes else frame

    def _join_outcomes(self, frame: pd.DataFrame, kind: str | None, where: str, params: list) -> pd.DataFrame:
        """Add the window's outcomes to ``frame`` (ordered by ``seq``), read by request id for labelled rows only."""
        seq = frame["seq"].to_numpy()
        labelled = pd.DataFrame({"seq": np.zeros(0, "int64"), "y_true": np.zeros(0), "outcome_time": np.zeros(0)})
        if len(seq):
            with self._sqlite() as con:
                logged = con.execute("SELECT count(*) FROM outcomes").fetchone()[0]
            # CROSS JOIN fixes SQLite's loop order: walk the smaller side and look the other up by its key
            # (left to itself, the planner probes outcomes once per captured row, even when none are logged)
            tables = "outcomes o CROSS JOIN captures c" if logged < len(seq) else "captures c CROSS JOIN outcomes o"
            sql = (f"SELECT c.seq AS seq, {_read('o.y_true', kind, alias='y_true')}, o.time AS outcome_time "
                   f"FROM {tables} ON c.request_id = o.request_id AND c.row = o.row{where} AND c.seq BETWEEN ? AND ?")
            labelled = self._query(sql, [*params, int(seq[0]), int(seq[-1])], categories=True)
        labelled = _typed(labelled, {"y_true": kind}, {})
        at = np.searchsorted(seq, labelled["seq"].to_numpy())
        found = at < len(seq)
        found[found] = seq[at[found]] == labelled["seq"].to_numpy()[found]
        at, labelled = at[found], labelled[found]
        frame["y_true"] = _spread(labelled["y_true"], at, len(frame))
        frame["outcome_time"] = _spread(labelled["outcome_time"].astype("float64"), at, len(frame))
        return frame

    def _where(self, window: Window, version, variant, endpoint, answered, endpoints=None) -> tuple[str, list]:
        clauses, params = [], []
        for column, value in (("version", version), ("variant", variant), ("endpoint", endpoint)):
            if value is not None:
                clauses.append(f"c.{column} = ?")
                params.append(str(value))
        if endpoints is not None:
            clauses.append(f"c.endpoint IN ({', '.join('?' * len(endpoints))})")
            params += [str(e) for e in endpoints]
        if window.start is not None:
            clauses.append("c.time >= ?")
            params.append(float(window.start))
        if window.end is not None:
            clauses.append("c.time < ?")
            params.append(float(window.end))
        if answered:
            clauses.append("c.status BETWEEN 200 AND 299 AND c.raw IS NULL")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _query(self, sql: str, params: list, *, categories: bool = False) -> pd.DataFrame:
        """Run a SELECT; ``categories``: strings come back as pandas categoricals (decoded once per distinct value)."""
        try:
            import adbc_driver_sqlite.dbapi as adbc
        except ImportError:
            adbc = None
        if adbc is not None:
            try:
                with adbc.connect(f"file:{self.path}?mode=ro") as con, con.cursor() as cursor:
                    # The driver types each column by the first batch it reads: one batch for the whole
                    # result, so a column null in its first rows is not typed as integers before its numbers.
                    cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(ADBC_BATCH_ROWS)})
                    cursor.execute(sql, tuple(params))
                    return cursor.fetch_arrow_table().to_pandas(strings_to_categorical=categories)
            except Exception:  # noqa: BLE001 - a type it cannot infer: the standard library reads anything
                pass
        with self._sqlite() as con:
            return pd.read_sql_query(sql, con, params=params)

    def _sqlite(self) -> sqlite3.Connection:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        return _Closing(con)

    # -- writing: outcomes and retention --------------------------------------------------------------
    def log_outcomes(self, request_ids: list, y_true: Any) -> int:
        """Record known labels of captured predictions; return how many rows they address.

        ``request_ids[i]`` is the ``x-request-id`` a response carried (``"ID"``: row 0 of that request),
        ``"ID#ROW"`` or ``(ID, ROW)`` for another instance of a multi-row request, and a bare ``"ID"``
        with a list of labels gives rows 0, 1, ... in order. Outcomes may arrive before the capture is
        written: they are joined when a report reads them. Logging a row again replaces its label.
        """
        labels = y_true.tolist() if hasattr(y_true, "tolist") else list(y_true)
        ids = request_ids.tolist() if hasattr(request_ids, "tolist") else list(request_ids)
        try:
            triples = capture.outcome_rows(ids, labels)
        except ValueError as exc:
            raise ConfigError(f"log_outcomes: {exc}") from None
        con = capture.connect(self.path)
        try:
            return capture.write_outcomes(con, triples)
        finally:
            con.close()

    def enforce_retention(self, retention: Any = None) -> int:
        """Delete captures past ``retention`` (see :meth:`deploykit._front.capture.Retention.parse`)."""
        try:
            policy = capture.Retention.parse(retention)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        con = capture.connect(self.path)
        try:
            return policy.enforce(con)
        finally:
            con.close()

    # -- export ---------------------------------------------------------------------------------------
    def export_parquet(self, path: str | Path, window: Any = None, *, outcomes: bool = True,
                       rows_per_file: int | None = None, **filters) -> list[Path]:
        """Write a window's rows to Parquet; return the files written.

        ``path`` ending in ``.parquet`` gives one file; any other path is a folder that receives one file
        per ``rows_per_file`` rows (default 500,000), ``part-00000.parquet``, ... ``time`` becomes a UTC
        timestamp.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = self.rows(window, outcomes=outcomes, **filters)
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        if outcomes:
            frame["outcome_time"] = pd.to_datetime(frame["outcome_time"], unit="s", utc=True)
        for column in frame.columns[frame.dtypes == object]:
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        path = Path(path)
        if path.suffix == ".parquet":
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
            return [path]
        path.mkdir(parents=True, exist_ok=True)
        size = rows_per_file or 500_000
        files = []
        for i, start in enumerate(range(0, max(len(frame), 1), size)):
            files.append(path / f"part-{i:05d}.parquet")
            pq.write_table(pa.Table.from_pandas(frame.iloc[start:start + size], preserve_index=False), files[-1])
        return files


def _typed(frame: pd.DataFrame, kinds: dict[str, str | None], names: dict[str, str]) -> pd.DataFrame:
    """Columns typed by kind (numeric: float64; text: categorical), renamed from their SQL aliases."""
    frame = frame.rename(columns=names)
    for column, kind in kinds.items():
        if column not in frame.columns or kind is None:
            continue
        if kind == "numeric" and frame[column].dtype != "float64":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif kind == "text" and not isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype("category")
    return frame


def _spread(values: pd.Series, at: np.ndarray, size: int) -> Any:
    """A column of ``size`` rows holding ``values`` at positions ``at`` and nulls elsewhere."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = np.full(size, -1, dtype=values.cat.codes.dtype)
        codes[at] = values.cat.codes.to_numpy()
        return pd.Categorical.from_codes(codes, dtype=values.dtype)
    out = np.full(size, np.nan) if values.dtype == "float64" else np.full(size, None, dtype=object)
    out[at] = values.to_numpy()
    return out


def _alias(feature: str) -> str:
    return capture.FEATURE_PREFIX + feature if feature in META or feature in ("y_true", "outcome_time") else feature


def _read(column: str, kind: str | None, *, alias: str) -> str:
    """A SELECT term that reads a dynamically typed SQLite column as one type (Arrow needs one per column)."""
    if kind == "numeric":
        # Only rows the service answered are read by default, and it validated their types, so a numeric
        # column holds numbers or nulls: a plain CAST (text would read as 0) is safe and the cheapest.
        expression = f"CAST({column} AS REAL)"
    elif kind == "text":
        expression = f"CAST({column} AS TEXT)"
    else:
        expression = column
    return f"{expression} AS {capture.quote(alias)}"


class _Closing:
    """``with`` for a sqlite3 connection that closes it (sqlite3's own ``with`` only commits)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        return self.con

    def __exit__(self, *exc) -> None:
        self.con.close()
