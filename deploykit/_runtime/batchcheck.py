"""Checking a chunk of batch rows a column at a time, with the service's own cell rules.

The row-wise check (:func:`.batch.validate`, the request validator run on blocks of rows) costs over a
microsecond a cell in Python, more than a fast model's ``predict``. Here each model column of the Arrow
chunk is checked whole, and every verdict still comes from the column's own rule
(:meth:`.schema._Column.verdict`), so a reject says exactly what the row-wise check, and the service's
422, would say:

- numbers (an integer or number column stored as Arrow integers or floats): numpy clears the cells that
  are certainly fine (not null unless the column allows it, finite, whole where an integer is required,
  strictly inside the range ``_Column`` checks, compared as floats, which can only clear too few); each
  cell it does not clear is given to the cell rule, which has the last word;
- everything else of a flat Arrow type (text, booleans, numbers in category or text columns, CSV cells,
  which are converted first as :func:`.batchio.from_text` does): the cell rule runs once per distinct
  value (``dictionary_encode``) and its verdict is mapped back to the rows.

Not covered, and so checked by the row-wise path for the whole chunk (:func:`check` returns None):
nested values (lists, structs, maps), dates and times, decimals, binary, half floats, and a cell rule
that raises (the row-wise path turns that into a reject of its own).
"""

from __future__ import annotations

from typing import Any

from . import batchio
from .errors import MAX_DETAILS
from .schema import EXACT_FLOAT, _is_null

Checked = tuple[Any, dict[str, Any], list[dict]]  # good positions, their values by column, the rejects


class NotCovered(Exception):
    """A column this module does not check; the chunk goes to the row-wise path."""


def check(validator, table, first_row: int, *, text: bool) -> Checked | None:
    """(positions of the good rows, their checked values by column for ``validator.build``, one reject
    per problem in row then schema order), or None when the row-wise path must check this chunk."""
    import numpy as np

    try:
        verdicts = [_column(rule, table.column(name), text) for name, rule in validator.checks]
    except NotCovered:
        return None
    bad = np.zeros(table.num_rows, bool)
    for column_bad, _, _ in verdicts:
        bad |= column_bad
    good = np.flatnonzero(~bad)
    values = {name: build(good) for (name, _), (_, _, build) in zip(validator.checks, verdicts)}
    return good, values, _rejects(validator, verdicts, first_row)


def _rejects(validator, verdicts: list, first_row: int) -> list[dict]:
    found = sorted((int(position), j, problem) for j, (_, problems, _) in enumerate(verdicts)
                   for position, problem in problems)
    rejects, per_row = [], {}
    for position, j, problem in found:
        per_row[position] = per_row.get(position, 0) + 1
        if per_row[position] <= MAX_DETAILS:  # as many as a request's 422 lists for one row
            rejects.append({"row": first_row + position, "column": validator.checks[j][0], "problem": problem})
    return rejects


def _column(check, chunked, text: bool):
    """(bad rows as a boolean mask, [(position, problem)], build(good) -> the good rows' values)."""
    import pyarrow as pa

    array = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_null(array.type):
        array = pa.nulls(len(array), pa.string())  # every cell null: judged once, as text would be
    numbers = pa.types.is_integer(array.type) or (pa.types.is_floating(array.type) and not pa.types.is_float16(array.type))
    if check.column["kind"] in ("integer", "number") and numbers:
        return _numbers(check, array)
    if numbers or pa.types.is_boolean(array.type) or _is_text(array.type):
        return _distinct(check, array, text)
    raise NotCovered(str(array.type))


def _is_text(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type)


def _numbers(check, array):
    """Numbers cleared by numpy where certainly fine; the cell rule judges the rest, one cell each."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    integers = pa.types.is_integer(array.type)
    values = array.fill_null(0 if integers else np.nan).to_numpy(zero_copy_only=False)
    floats = values.astype("float64", copy=False)
    nulls = pc.is_null(array, nan_is_null=True).to_numpy(zero_copy_only=False)
    # strict float comparisons: rounding is monotonic, so a cell strictly inside is inside exactly
    fine = np.isfinite(floats) & (floats > float(check.low)) & (floats < float(check.high))
    if check.column["kind"] == "integer" and not integers:
        fine &= (np.floor(floats) == floats) & (np.abs(floats) < EXACT_FLOAT)
    fine = np.where(nulls, check.null_problem() is None, fine)
    bad, problems = _judge_cells(check, array, np.flatnonzero(~fine))

    def build(good):
        if integers and nulls[good].any():  # Python values, as the row-wise path has them: exact past 2**53
            return array.take(good).to_pylist()
        return values[good]  # NaN for a null, as schema._series expects

    return bad, problems, build


def _judge_cells(check, array, positions):
    import numpy as np

    bad = np.zeros(len(array), bool)
    problems = []
    cells = array.take(positions).to_pylist() if len(positions) else []
    for position, value in zip(positions, cells):
        if problem := _verdict(check, value):
            bad[position] = True
            problems.append((position, problem))
    return bad, problems


def _distinct(check, array, text: bool):
    """The cell rule once per distinct value, its verdicts mapped back to the rows."""
    import numpy as np
    import pyarrow.compute as pc

    encoded = array.dictionary_encode()
    values = encoded.dictionary.to_pylist() + [None]  # the last entry stands for Arrow's null
    if text:
        values = batchio.from_text(values, check.column)
    indices = pc.fill_null(encoded.indices, len(values) - 1).to_numpy(zero_copy_only=False)
    verdicts = [_verdict(check, value) for value in values]
    lookup = np.array([v is not None for v in verdicts])
    bad = lookup[indices]
    problems = [(position, verdicts[indices[position]]) for position in np.flatnonzero(bad)]
    objects = np.empty(len(values), object)
    objects[:] = [None if _is_null(value) else value for value in values]  # as schema._series expects

    def build(good):
        return objects[indices[good]]

    return bad, problems, build


def _verdict(check, value):
    try:
        return check.verdict(value)
    except Exception as exc:  # noqa: BLE001 - the row-wise path reports it for its row
        raise NotCovered(f"the cell rule raised {type(exc).__name__}") from exc
