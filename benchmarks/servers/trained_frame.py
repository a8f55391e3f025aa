"""Rebuilding the training frame's dtypes from JSON rows, for the BentoML servers of mixed-type models.

``$BENCH_DTYPES`` names a JSON file written by the harness: column -> dtype string, or the category list
of a pandas category column (LightGBM, XGBoost and HistGradientBoosting read those natively). A user
serving such a model with BentoML writes the same few lines.
"""

import json
import os

import pandas as pd

with open(os.environ["BENCH_DTYPES"]) as _file:
    DTYPES = json.load(_file)
COLUMNS = list(DTYPES)


def as_trained(frame: pd.DataFrame) -> pd.DataFrame:
    for column, dtype in DTYPES.items():
        if isinstance(dtype, list):
            frame[column] = pd.Categorical(frame[column], categories=dtype)
        elif dtype in ("object", "str", "string"):
            frame[column] = frame[column].astype(object)
        else:  # numbers: from arrays they may come as text; a missing value becomes NaN
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
            if not frame[column].isna().any():
                frame[column] = frame[column].astype(dtype)
    return frame
