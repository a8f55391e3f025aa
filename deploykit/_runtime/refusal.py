"""When the model fails on input the schema accepted: whose fault is it?

A value can fit its column's dtype and still be more than the model handles: scikit-learn's trees read
their input as float32, so 1e300 in a float64 column makes them raise "Input X contains infinity or a
value too large for dtype('float32')". If the model still answers the package's own sample rows, the
fault lies in the request: the first failing row is found by bisection, its culprit column by putting
the sample's value back one column at a time, and the answer is a 422 naming both. If the sample rows
fail too, the service is at fault and the error stays a 500.

Such a 422 carries ``x-deploykit-refusal: model``: the client is told its row is out of the model's
reach, and a front running a candidate beside a live version counts it as the candidate's failure
(the live version may well answer that row) and lets the live version answer instead.
"""

from __future__ import annotations

from typing import Callable

from .errors import InputError, clip
from .explain import Stopped

Columns = dict[str, list]
REFUSAL_HEADER = "x-deploykit-refusal"


def _rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _take(columns: Columns, start: int, stop: int) -> Columns:
    return {name: values[start:stop] for name, values in columns.items()}


def _fails(call: Callable[[Columns], object], columns: Columns) -> bool:
    try:
        call(columns)
    except (InputError, Stopped):
        raise
    except Exception:  # noqa: BLE001 - that the model fails is the finding
        return True
    return False


def first_failing_row(call, columns: Columns) -> int | None:
    """The lowest row index on which ``call`` fails by itself, or None (it fails only on rows together)."""
    low, high = 0, _rows(columns)
    while high - low > 1:
        middle = (low + high) // 2
        if _fails(call, _take(columns, low, middle)):
            high = middle
        elif _fails(call, _take(columns, middle, high)):
            low = middle
        else:
            return None
    return low if high - low == 1 and _fails(call, _take(columns, low, high)) else None


def refusal(call, columns: Columns, sample: Columns, error: Exception) -> InputError | None:
    """A 422 naming the row (and column) the model cannot take, or None when the service is at fault."""
    if not sample or _fails(call, sample):
        return None
    row = first_failing_row(call, columns)
    if row is None:
        return None
    single = _take(columns, row, row + 1)
    culprit = next((name for name in columns if not _fails(call, {**single, name: sample[name][:1]})), None)
    why = clip(f"{type(error).__name__}: {error}".strip(), 160)
    where = f"column {culprit!r}" if culprit else "this row"
    problem = (f"the model cannot compute an answer from {where} ({why}), although it fits the input schema; "
               "send values within the range the model was trained on")
    text = f"row {row}" + (f", column {culprit!r}" if culprit else "") + f": {problem}"
    return InputError(text, details=[{"row": row, "column": culprit, "problem": problem}], status=422,
                      headers={REFUSAL_HEADER: "model"})


def checked(call, sample: Callable[[], Columns]):
    """``call`` that raises the row's 422 instead of the model's exception, when the request is at fault."""
    def run(columns: Columns, *args):
        try:
            return call(columns, *args)
        except (InputError, Stopped):
            raise
        except Exception as exc:
            refused = refusal(lambda c: call(c, *args), columns, sample(), exc)
            if refused is None:
                raise
            raise refused from None
    return run
