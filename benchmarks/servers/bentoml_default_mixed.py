"""BentoML 1.4 defaults, for models whose columns are not all numbers (categories, missing values).

As ``bentoml_default`` but the rows are ``list[dict[str, Any]]`` and the frame gets the training dtypes
(``trained_frame.py``). Run: ``BENCH_MODEL=model.pkl BENCH_DTYPES=dtypes.json bentoml serve bentoml_default_mixed:Model``.
"""

import os
import pickle
from typing import Any

import bentoml
import pandas as pd
from trained_frame import COLUMNS, as_trained


@bentoml.service
class Model:
    def __init__(self) -> None:
        with open(os.environ["BENCH_MODEL"], "rb") as file:
            self.model = pickle.load(file)

    @bentoml.api
    def predict(self, instances: list[dict[str, Any]]) -> list:
        return self.model.predict(as_trained(pd.DataFrame(instances, columns=COLUMNS))).tolist()
