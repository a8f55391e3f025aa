"""Files for batch scoring: reading a source in chunks of rows, and writing the scored parts.

Sources and destinations are a CSV file, a Parquet file, or a folder of Parquet parts. Everything goes
through Arrow tables, so a source's columns reach the output with the types they had, and a chunk is
always exactly ``chunk_rows`` rows (the last one fewer): chunk ``k`` is the same rows on every run, which
is what lets an interrupted run skip the chunks it finished.

CSV cells are read as text. The model's columns are turned into the values a JSON request would carry
(numbers, booleans, text) before validation; a cell that does not convert stays text, so the validator
reports it with its row and column instead of the whole column being read as strings.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CSV, PARQUET, PARTS = "csv", "parquet", "parts"
_TRUE, _FALSE = frozenset({"true", "True", "TRUE", "1"}), frozenset({"false", "False", "FALSE", "0"})


def format_of(path: str | Path, *, existing: bool) -> str:
    """``csv``, ``parquet`` or ``parts`` (a folder of Parquet files) for ``path``; raises ValueError."""
    path = Path(path)
    if existing and path.is_dir():
        return PARTS
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return CSV
    if suffix in (".parquet", ".pq"):
        return PARQUET
    if not existing and not suffix:
        return PARTS
    raise ValueError(f"{path}: use a .csv or .parquet file, or a folder of .parquet parts")


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str

    @classmethod
    def open(cls, path: str | Path) -> Source:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"batch source {str(path)!r} does not exist (relative to {Path.cwd()})")
        source = cls(path, format_of(path, existing=True))
        if source.kind == PARTS and not source.files():
            raise ValueError(f"batch source folder {path} holds no .parquet files")
        return source

    def files(self) -> list[Path]:
        if self.kind != PARTS:
            return [self.path]
        return sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".parquet", ".pq") and not p.name.startswith(("_", ".")))

    def fingerprint(self) -> list:
        """What identifies the input of a run: each file's name, size and modification time."""
        return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in self.files()]

    def rows(self) -> int | None:
        """The row count when the format records it (Parquet); None for CSV."""
        if self.kind == CSV:
            return None
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files())

    def columns(self) -> list[str]:
        if self.kind == CSV:
            with open(self.path, newline="") as handle:
                return next(csv.reader(handle), [])
        import pyarrow.parquet as pq

        return list(pq.read_schema(self.files()[0]).names)

    def chunks(self, chunk_rows: int) -> Iterator:
        """Arrow tables of exactly ``chunk_rows`` rows (the last may be shorter), in file order."""
        return _rechunk(self._batches(), chunk_rows)

    def _batches(self) -> Iterator:
        if self.kind == CSV:
            import pyarrow as pa
            import pyarrow.csv as pcsv

            names = self.columns()
            convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True)
            with pcsv.open_csv(self.path, convert_options=convert) as reader:
                yield from reader
            return
        import pyarrow.parquet as pq

        for path in self.files():
            yield from pq.ParquetFile(path).iter_batches(batch_size=65536)


def _rechunk(batches, chunk_rows: int) -> Iterator:
    import pyarrow as pa

    pending, count = [], 0
    for batch in batches:
        while batch.num_rows:
            take = min(batch.num_rows, chunk_rows - count)
            pending.append(batch.slice(0, take))
            batch, count = batch.slice(take), count + take
            if count == chunk_rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


def cells(table, schema: dict, *, text: bool) -> dict[str, list]:
    """The model's columns of ``table`` as Python values, as a JSON request would carry them."""
    out = {}
    for column in schema["columns"]:
        values = table.column(column["name"]).to_pylist()
        out[column["name"]] = from_text(values, column) if text else values
    return out


def from_text(values: list, column: dict) -> list:
    """CSV cells (text, or None) as a JSON request would carry them for ``column``; text that does not
    convert stays text, for the validator to report."""
    kind = column["kind"]
    categories = column.get("categories") or []
    numeric = kind in ("integer", "number") or (kind == "category" and categories and
                                                 all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in categories))
    if numeric:
        return [_number(v) for v in values]
    if kind == "boolean":
        return [True if v in _TRUE else False if v in _FALSE else v for v in values]
    return values


def _number(text: str | None):
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # left as text: the validator names the row and column


# -- writing -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Destination:
    """Where the output goes, where its rejects go, and the folder that holds a run's progress."""

    path: Path
    kind: str

    @classmethod
    def of(cls, path: str | Path) -> Destination:
        path = Path(path)
        return cls(path, format_of(path, existing=path.is_dir()))

    @property
    def rejects(self) -> Path:
        stem = self.path.name if self.kind == PARTS else self.path.stem
        suffix = ".csv" if self.kind == CSV else ".parquet"
        return self.path.with_name(f"{stem}.rejects{suffix}")

    @property
    def state(self) -> Path:
        """Finished chunks and the run's identity; removed when the run completes."""
        return self.path.with_name(f".{self.path.name}.deploykit-batch")

    def part(self, index: int) -> Path:
        folder = self.path if self.kind == PARTS else self.state
        return folder / f"part-{index:05d}.{'csv' if self.kind == CSV else 'parquet'}"

    def rejects_part(self, index: int) -> Path:
        return self.state / f"rejects-{index:05d}.{'csv' if self.kind == CSV else 'parquet'}"


def write_table(table, path: Path, kind: str) -> None:
    """Write ``table`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    if kind == CSV:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, partial)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, partial)
    os.replace(partial, path)


def concatenate(parts: list[Path], target: Path, kind: str, empty) -> None:
    """Join part files, in order, into one ``target`` file of format ``kind`` (streamed, not loaded whole)."""
    partial = target.with_name(f".{target.name}.partial")
    if kind == CSV:
        _concatenate_csv(parts, partial, empty)
    else:
        _concatenate_parquet(parts, partial, empty)
    os.replace(partial, target)


def _concatenate_csv(parts: list[Path], partial: Path, empty) -> None:
    if not parts:
        write_table(empty, partial, CSV)
        return
    with open(partial, "wb") as out:
        for i, part in enumerate(parts):
            with open(part, "rb") as handle:
                header = handle.readline()
                if i == 0:
                    out.write(header)
                while block := handle.read(1 << 20):
                    out.write(block)


def _concatenate_parquet(parts: list[Path], partial: Path, empty) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts] or [empty.schema]
    # A chunk whose prediction or source column happens to be all null can carry another type; promote.
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    with pq.ParquetWriter(partial, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part).cast(schema))
        if not parts:
            writer.write_table(empty.cast(schema))
